import { type ChildProcess, execSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import mqtt from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { type ProcSample, sample } from './procStats.js';

// Overload rows (issue 11): a QoS 0 flood, 10,000 connections at 1 msg/s, and
// a stalled subscriber during a 10,000 readings/s QoS 1 run.
// BENCH_ONLY=overload npm run bench runs only these.

export interface OverloadRow {
  scenario: string;
  readings: number;
  readings_per_s: number;
  p50_ms?: number;
  p99_ms?: number;
  cpu_s?: number;
  peak_rss_mb?: number;
  note?: string;
}

export interface Counts {
  received: number;
  accepted: number;
  written: number;
  dropped: number;
  clients: number;
  /** the daemon's own view of its memory (prom-client's process and nodejs gauges), when scraped */
  memory?: {
    rss: number;
    heapUsed: number;
    heapTotal: number;
    external: number;
    forcedGc: number;
    /** points in the pipeline's memory (energy_ingest_pipeline_backlog_points) */
    backlog: number;
    catchups: number;
    writeErrors: number;
    /** V8 heap spaces: `<space>_total`, `<space>_used` */
    spaces: Record<string, number>;
    waits: Record<string, number>;
  };
}

export interface Daemon {
  child: ChildProcess;
  mqttPort: number;
  metrics(): Promise<Counts>;
  stop(): Promise<void>;
}

export interface BenchContext {
  root: string;
  /** the daemon → InfluxDB 1.x (database `db`), optionally under a command prefix (prlimit) */
  daemon(env: Record<string, string>, prefix?: string[]): Promise<Daemon>;
  track(child: ChildProcess): ChildProcess;
  stopChild(child: ChildProcess): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round = (n: number) => Math.round(n * 10) / 10;
const mb = (bytes: number) => Math.round(bytes / 1024 / 1024);
/** 65536 descriptors, or the hard limit when lower (raising it needs privileges) */
const NOFILE = Math.min(
  65536,
  Number(execSync('ulimit -Hn', { shell: '/bin/sh' }).toString().trim()) || 65536,
);
const PRLIMIT = ['prlimit', `--nofile=${NOFILE}:${NOFILE}`];
const FLOOD_S = Number(process.env.BENCH_FLOOD_S ?? 30);
const CONNS = Number(process.env.BENCH_CONNECTIONS ?? 10_000);

function lines(child: ChildProcess, on: (line: string) => void): void {
  let buf = '';
  child.stdout!.on('data', (b: Buffer) => {
    buf += b.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      on(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
}

/** QoS 0 at full speed from 50 connections for FLOOD_S seconds: peak RSS, written rate while it lasts, drops. */
export async function flood(ctx: BenchContext): Promise<OverloadRow> {
  // BENCH_FLOOD_NODE_ARGS: node/V8 flags for the daemon alone (to measure heap settings, --trace-gc);
  // the shell execs node in place (same pid), dropping the 'node' the context puts after the prefix
  const nodeArgs = process.env.BENCH_FLOOD_NODE_ARGS;
  const d = await ctx.daemon(
    { INFLUX_DATABASE: 'bench_flood' },
    nodeArgs ? ['sh', '-c', `shift; exec node ${nodeArgs} "$@"`, 'sh'] : undefined,
  );
  const cpu0 = sample(d.child.pid!);
  const sim = ctx.track(
    spawn(
      'node',
      [
        join(ctx.root, 'bin', 'energy-ingest.js'),
        'simulate',
        '--url',
        `mqtt://127.0.0.1:${d.mqttPort}`,
        '--quiet',
        '--qos',
        '0',
        ...[
          '--buildings',
          '10',
          '--floors',
          '10',
          '--rooms',
          '10',
          '--types',
          'temperature,humidity,power,co2',
        ],
        ...['--interval-ms', '0', '--connections', '50', '--max-inflight', '2000'],
        ...['--duration-s', String(FLOOD_S)],
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    ),
  );
  let out = '';
  sim.stdout!.on('data', (b) => {
    out += b;
  });
  const exited = new Promise((resolve) => sim.once('exit', resolve));
  // what holds the memory: the daemon's heap and external memory at its highest RSS (sampled every 250 ms)
  let peak: NonNullable<Counts['memory']> | undefined;
  const most = { heapUsed: 0, heapTotal: 0, external: 0, backlog: 0 };
  let last: Counts['memory'];
  let peakAnon = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const mem = (await d.metrics().catch(() => undefined))?.memory;
      if (mem) {
        last = mem;
        if (!peak || mem.rss > peak.rss) {
          peak = mem;
          peakAnon =
            Number(/^RssAnon:\s+(\d+)/m.exec(readFileSync(`/proc/${d.child.pid}/status`, 'utf8'))?.[1] ?? 0) *
            1024;
        }
        most.heapUsed = Math.max(most.heapUsed, mem.heapUsed);
        most.heapTotal = Math.max(most.heapTotal, mem.heapTotal);
        most.external = Math.max(most.external, mem.external);
        most.backlog = Math.max(most.backlog, mem.backlog);
      }
      await sleep(250);
    }
  })();
  // the flood starts with the first message in; it ends when the simulator has sent for FLOOD_S
  let m = await d.metrics();
  while (m.received === 0 && sim.exitCode === null) {
    await sleep(50);
    m = await d.metrics();
  }
  const t0 = performance.now();
  const first = m;
  let minWindow = Number.POSITIVE_INFINITY;
  let prev = m;
  let prevT = t0;
  while (performance.now() - t0 < FLOOD_S * 1000 && sim.exitCode === null) {
    await sleep(2000);
    m = await d.metrics();
    const t = performance.now();
    minWindow = Math.min(minWindow, (m.written - prev.written) / ((t - prevT) / 1000));
    prev = m;
    prevT = t;
  }
  const secs = (performance.now() - t0) / 1000;
  const during = m;
  await exited;
  const summary = JSON.parse(out.trim().split('\n').at(-1)!) as { sent: number; duration_s: number };
  // afterwards: how long until everything received is written
  const tEnd = performance.now();
  while (m.written + m.dropped < m.accepted && performance.now() - tEnd < 120_000) {
    await sleep(200);
    m = await d.metrics();
  }
  const s: ProcSample = sample(d.child.pid!);
  sampling = false;
  await sampler;
  await d.stop();
  const memNote = peak
    ? `; at the highest sampled RSS (${mb(peak.rss)} MB): heap ${mb(peak.heapUsed)} MB used of ${mb(peak.heapTotal)} MB, external ${mb(peak.external)} MB, anonymous RSS ${mb(peakAnon)} MB, spaces (MB used/total) ${Object.keys(
        peak.spaces,
      )
        .filter((k) => k.endsWith('_total') && peak!.spaces[k]! > 1024 * 1024)
        .map(
          (k) =>
            `${k.slice(0, -6)} ${mb(peak!.spaces[`${k.slice(0, -6)}_used`] ?? 0)}/${mb(peak!.spaces[k]!)}`,
        )
        .join(
          ', ',
        )}; most heap used ${mb(most.heapUsed)} MB, heap total ${mb(most.heapTotal)} MB, external ${mb(most.external)} MB; points in the pipeline ${peak.backlog} then, at most ${most.backlog}; catch-ups from disk ${last?.catchups}; write errors ${last?.writeErrors}; forced GCs ${last?.forcedGc}; admission waits ${JSON.stringify(last?.waits)}`
    : '';
  return {
    scenario: `flood: QoS 0 at full speed, 50 connections, ${FLOOD_S} s → InfluxDB 1.x`,
    readings: m.written,
    readings_per_s: Math.round((during.written - first.written) / secs),
    cpu_s: round(s.cpuSeconds - cpu0.cpuSeconds),
    peak_rss_mb: mb(s.peakRssBytes),
    note: `written rate during the flood (slowest 2 s window ${Math.round(minWindow)}/s); received ${Math.round((during.received - first.received) / secs)}/s during it; simulator sent ${summary.sent} in ${summary.duration_s} s; dropped ${m.dropped}; all written ${round((performance.now() - tEnd) / 1000)} s after the simulator finished${memNote}`,
  };
}

/** CONNS raw connections, one QoS 0 reading each per second: RSS per connection, daemon and bare Aedes. */
export async function manyConnections(ctx: BenchContext): Promise<OverloadRow[]> {
  const seconds = 20;
  const gen = join(ctx.root, 'dist', 'bench', 'connections.js');
  const run = async (
    name: string,
    pid: number,
    port: number,
    received: () => Promise<number>,
    memory?: () => Promise<Counts['memory']>,
  ): Promise<OverloadRow> => {
    const idle = sample(pid);
    const cpu0 = idle.cpuSeconds;
    const g = ctx.track(
      spawn(PRLIMIT[0]!, [...PRLIMIT.slice(1), 'node', gen, String(port), String(CONNS), String(seconds)], {
        stdio: ['ignore', 'pipe', 'inherit'],
      }),
    );
    let connected = 0;
    let refused = 0;
    let mid: ProcSample | null = null;
    let midReceived = 0;
    let midAt = 0;
    let midMemory: Counts['memory'];
    let sent = 0;
    const waits: Promise<void>[] = [];
    lines(g, (line) => {
      const [k, a, , b] = line.split(' ');
      if (k === 'connected') {
        connected = Number(a);
        refused = Number(b);
      }
      if (k === 'mid') {
        mid = sample(pid);
        if (memory)
          waits.push(
            memory().then((m) => {
              midMemory = m;
            }),
          );
        midAt = performance.now();
        waits.push(
          received().then((n) => {
            midReceived = n;
          }),
        );
      }
      if (k === 'done') sent = Number(a);
    });
    const t0 = performance.now();
    await new Promise((resolve) => g.once('exit', resolve));
    await Promise.all(waits);
    const endReceived = await received();
    const end = sample(pid);
    const rate = midAt ? (endReceived - midReceived) / ((performance.now() - midAt) / 1000) : 0;
    const at = (mid as ProcSample | null) ?? end;
    const perConn = connected ? (at.rssBytes - idle.rssBytes) / connected / 1024 : 0;
    return {
      scenario: `${name}: ${CONNS} connections, 1 QoS 0 reading/s each`,
      readings: endReceived,
      readings_per_s: Math.round(rate),
      cpu_s: round(end.cpuSeconds - cpu0),
      peak_rss_mb: mb(end.peakRssBytes),
      note: `${connected} connected, ${refused} refused; RSS ${mb(idle.rssBytes)} MB idle → ${mb(at.rssBytes)} MB loaded: ${round(perConn)} KiB per connection; ${sent} sent in ${round((performance.now() - t0) / 1000)} s (connects included)${midMemory ? `; halfway: heap ${mb(midMemory.heapUsed)} MB used of ${mb(midMemory.heapTotal)} MB, external ${mb(midMemory.external)} MB, points in the pipeline ${midMemory.backlog}, write errors ${midMemory.writeErrors}, catch-ups ${midMemory.catchups}, admission waits ${JSON.stringify(midMemory.waits)}` : ''}`,
    };
  };

  const d = await ctx.daemon(
    {
      INFLUX_DATABASE: 'bench_connections',
      EI_MQTT_MAX_CONNECTIONS: String(CONNS * 2),
      EI_MQTT_CONNECT_RATE_PER_IP: String(CONNS * 2),
    },
    PRLIMIT,
  );
  let daemonRow: OverloadRow;
  try {
    // prlimit execs node: the daemon is the child itself
    daemonRow = await run(
      'daemon',
      d.child.pid!,
      d.mqttPort,
      async () => (await d.metrics()).received,
      async () => (await d.metrics()).memory,
    );
  } finally {
    await d.stop();
  }

  const bare = ctx.track(
    spawn(
      ...([
        'prlimit',
        [...PRLIMIT.slice(1), 'node', join(ctx.root, 'dist', 'bench', 'bareBroker.js'), '0'],
      ] as const),
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    ),
  );
  let port = 0;
  let count = 0;
  lines(bare, (line) => {
    const [k, v] = line.split(' ');
    if (k === 'port') port = Number(v);
    if (k === 'count') count = Number(v);
  });
  while (!port) await sleep(20);
  let bareRow: OverloadRow;
  try {
    bareRow = await run('baseline: bare Aedes', bare.pid!, port, async () => count);
  } finally {
    await ctx.stopChild(bare);
  }
  return [daemonRow, bareRow];
}

/** 10,000 readings/s at QoS 1 from 4 MQTT.js connections for `seconds`: publish → PUBACK times. */
async function qos1Run(
  port: number,
  seconds: number,
): Promise<{ sent: number; acked: number; p50: number; p99: number; max: number }> {
  const clients = await Promise.all(
    Array.from({ length: 4 }, (_, i) =>
      mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
        clientId: `stall-bench-${process.pid}-${i}-${Date.now()}`,
        protocolVersion: 4,
        reconnectPeriod: 0,
      }),
    ),
  );
  const lat: number[] = [];
  let sent = 0;
  const t0 = performance.now();
  let tick = 0;
  // 100 publishes every 10 ms, paced by the clock (not by the acknowledgements)
  while (performance.now() - t0 < seconds * 1000) {
    const due = Math.floor((performance.now() - t0) / 10);
    for (; tick <= due; tick++) {
      for (let j = 0; j < 100; j++) {
        const n = sent++;
        const c = clients[n % 4]!;
        const at = performance.now();
        c.publish(
          `sensors/building_${String((n % 100) + 1).padStart(3, '0')}/1/room_${n % 25}/power`,
          JSON.stringify({ value: n % 1000, timestamp: Date.now() }),
          { qos: 1 },
          (err) => {
            if (!err) lat.push(performance.now() - at);
          },
        );
      }
    }
    await sleep(5);
  }
  // acknowledgements still due get 5 s
  const deadline = performance.now() + 5000;
  while (lat.length < sent && performance.now() < deadline) await sleep(50);
  const acked = lat.length;
  await Promise.all(clients.map((c) => c.endAsync(true)));
  lat.sort((a, b) => a - b);
  // a publish never acknowledged counts as slower than any that was (p99 is then "not reached")
  const q = (p: number) => {
    const i = Math.floor(p * sent);
    return i < lat.length ? round(lat[i]!) : Number.POSITIVE_INFINITY;
  };
  return { sent, acked, p50: q(0.5), p99: q(0.99), max: round(lat.at(-1) ?? Number.NaN) };
}

/** A subscriber on sensors/# that never reads its socket, during a 10,000 readings/s QoS 1 run. */
export async function stalledSubscriber(ctx: BenchContext): Promise<OverloadRow[]> {
  const seconds = 15;
  const d = await ctx.daemon({ INFLUX_DATABASE: 'bench_stall' });
  try {
    const cpu0 = sample(d.child.pid!);
    const before = await qos1Run(d.mqttPort, seconds);
    const cpu1 = sample(d.child.pid!);
    // raw socket: CONNECT, SUBSCRIBE sensors/# at QoS 1, then never read again
    const stalled = connect(d.mqttPort, '127.0.0.1');
    stalled.on('error', () => {});
    stalled.write(
      mqttPacket.generate({
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 4,
        clean: true,
        clientId: `stalled-${process.pid}`,
        keepalive: 0,
      }),
    );
    stalled.write(
      mqttPacket.generate({
        cmd: 'subscribe',
        messageId: 1,
        subscriptions: [{ topic: 'sensors/#', qos: 1 }],
      }),
    );
    await sleep(500);
    stalled.pause();
    const during = await qos1Run(d.mqttPort, seconds);
    const cpu2 = sample(d.child.pid!);
    // the publishers have closed: the one client left, if any, is the stalled subscriber
    await sleep(500);
    const connected = (await d.metrics()).clients > 0;
    stalled.destroy();
    const row = (name: string, r: typeof before, cpu: number, extra: string): OverloadRow => ({
      scenario: name,
      readings: r.acked,
      readings_per_s: Math.round(r.acked / seconds),
      p50_ms: Number.isFinite(r.p50) ? r.p50 : undefined,
      p99_ms: Number.isFinite(r.p99) ? r.p99 : undefined,
      cpu_s: round(cpu),
      peak_rss_mb: mb(cpu2.peakRssBytes),
      note: `publish → PUBACK${Number.isFinite(r.p99) ? '' : ' (p99 not reached: more than 1% never acknowledged)'}; ${r.sent} sent, ${r.acked} acknowledged (within 5 s after the run), max ${r.max} ms of those${extra}`,
    });
    return [
      row(
        `stalled subscriber: 10,000 readings/s QoS 1 for ${seconds} s, no subscriber`,
        before,
        cpu1.cpuSeconds - cpu0.cpuSeconds,
        '',
      ),
      row(
        `stalled subscriber: same, with a sensors/# subscriber that never reads`,
        during,
        cpu2.cpuSeconds - cpu1.cpuSeconds,
        `; the stalled subscriber was ${connected ? 'still connected' : 'disconnected by the broker'} at the end`,
      ),
    ];
  } finally {
    await d.stop();
  }
}
