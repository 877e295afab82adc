import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Mosquitto, startMosquitto } from '../tests/helpers/mosquitto.js';
import {
  freePort,
  type RestartableService,
  type Service,
  startInflux1,
  startRedis,
  tempDir,
} from '../tests/helpers/services.js';
import { alertEvalCost, alertLatency, writeBenchConfig } from './alerts.js';
import { alertClusterCost } from './clusterAlerts.js';
import { bareRun, daemonRun } from './fixedLoad.js';
import { forecastAccuracy, latestCacheMicro, latestCacheRun } from './latestCache.js';
import { type BenchContext, flood, manyConnections, stalledSubscriber } from './overload.js';
import { type ProcSample, sample } from './procStats.js';

// npm run bench: every scenario next to its baseline, measured in the same run.

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = join(ROOT, 'bin', 'energy-ingest.js');
const COUNT = Number(process.env.BENCH_COUNT ?? 400_000);
const QOS1_COUNT = Number(process.env.BENCH_QOS1_COUNT ?? 100_000);
const RECOVERY_COUNT = Number(process.env.BENCH_RECOVERY_COUNT ?? 1_000_000);
const BRIDGE_COUNT = Number(process.env.BENCH_BRIDGE_COUNT ?? 50_000);
const children = new Set<ChildProcess>();

interface Row {
  scenario: string;
  readings: number;
  readings_per_s: number;
  p50_ms?: number;
  p99_ms?: number;
  cpu_s?: number;
  peak_rss_mb?: number;
  vs_bare_aedes?: number;
  vs_influx_direct?: number;
  note?: string;
}

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(t);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function simulate(url: string, args: string[]): Promise<Record<string, number>> {
  const child = track(
    spawn(
      'node',
      [
        BIN,
        'simulate',
        '--url',
        url,
        '--quiet',
        '--qos',
        '0',
        '--types',
        'temperature,humidity,power,co2',
        ...args,
      ],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    ),
  );
  let out = '';
  child.stdout!.on('data', (b) => {
    out += b;
  });
  await new Promise((resolve) => child.once('exit', resolve));
  return JSON.parse(out.trim().split('\n').at(-1)!);
}

/** Full-speed load: 4 connections, 10×10×10 buildings/floors/rooms × 4 types = 4000 series. */
const FULL_SPEED = [
  '--buildings',
  '10',
  '--floors',
  '10',
  '--rooms',
  '10',
  '--interval-ms',
  '0',
  '--connections',
  '4',
  '--max-inflight',
  '2000',
];

async function bareAedes(qos: 0 | 1 = 0, total = COUNT): Promise<Row> {
  const child = track(
    spawn('node', [join(ROOT, 'dist', 'bench', 'bareBroker.js'), '0'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    }),
  );
  let port = 0;
  let count = 0;
  let firstAt = 0;
  let reachedAt = 0;
  child.stdout!.on('data', (b: Buffer) => {
    for (const line of b.toString().split('\n')) {
      const [k, v] = line.split(' ');
      if (k === 'port') port = Number(v);
      if (k === 'count') {
        count = Number(v);
        if (count > 0 && !firstAt) firstAt = performance.now();
        if (count >= total && !reachedAt) reachedAt = performance.now();
      }
    }
  });
  while (!port) await sleep(20);
  const cpu0 = sample(child.pid!);
  const t0 = performance.now();
  const qosArgs = qos === 1 ? ['--qos', '1', '--max-inflight', '200'] : [];
  await simulate(`mqtt://127.0.0.1:${port}`, [...FULL_SPEED, '--count', String(total), ...qosArgs]);
  const deadline = performance.now() + 60_000;
  while (!reachedAt && performance.now() < deadline) await sleep(20);
  const s = sample(child.pid!);
  await stopChild(child);
  // from the first message to the last: simulator start-up and connects are not the broker's time
  const secs = ((reachedAt || performance.now()) - (firstAt || t0)) / 1000;
  return {
    scenario: `baseline: bare Aedes (QoS ${qos})`,
    readings: count,
    readings_per_s: Math.round(count / secs),
    cpu_s: round(s.cpuSeconds - cpu0.cpuSeconds),
    peak_rss_mb: mb(s),
  };
}

async function influxDirect(influx: Service): Promise<Row> {
  const db = 'bench_direct';
  await fetch(`${influx.url}/query`, {
    method: 'POST',
    body: new URLSearchParams({ q: `CREATE DATABASE ${db}` }),
  });
  const now = Date.now();
  const batches: string[] = [];
  for (let b = 0; b < COUNT / 5000; b++) {
    const lines: string[] = [];
    for (let i = 0; i < 5000; i++) {
      const n = b * 5000 + i;
      lines.push(
        `sensor_readings,building_id=building_${String((n % 10) + 1).padStart(3, '0')},floor=${n % 7},room=room_${n % 100},sensor_type=temperature value=${(20 + (n % 50) / 10).toFixed(2)},unit="celsius",status="normal" ${now - COUNT + n}`,
      );
    }
    batches.push(lines.join('\n'));
  }
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < batches.length) {
        const body = batches[next++]!;
        const res = await fetch(`${influx.url}/write?db=${db}&precision=ms`, { method: 'POST', body });
        if (res.status !== 204) throw new Error(`direct write: ${res.status} ${await res.text()}`);
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  return {
    scenario: 'baseline: InfluxDB 1.x direct line protocol (batches of 5000, 4 concurrent)',
    readings: COUNT,
    readings_per_s: Math.round(COUNT / secs),
  };
}

interface Status {
  messages_received: number;
  points_written: number;
  readings_accepted: number;
  ingest_latency_p50_s: number;
  ingest_latency_p99_s: number;
}

async function daemon(
  env: Record<string, string>,
  prefix: string[] = [],
  nodeFlags: string[] = [],
): Promise<{
  child: ChildProcess;
  mqtt: string;
  mqttPort: number;
  httpPort: number;
  status: () => Promise<Status>;
  dataDir: string;
}> {
  const dataDir = tempDir('bench');
  const [mqttPort, httpPort] = [await freePort(), await freePort()];
  const [cmd, ...args] = [...prefix, 'node', ...nodeFlags, BIN, 'start'];
  const child = track(
    spawn(cmd!, args, {
      env: {
        ...process.env,
        MQTT_PORT: String(mqttPort),
        HTTP_PORT: String(httpPort),
        DATA_DIR: dataDir,
        LOG_LEVEL: 'warn',
        ...env,
      },
      stdio: ['ignore', 'inherit', 'inherit'],
    }),
  );
  const status = async () =>
    (await (await fetch(`http://127.0.0.1:${httpPort}/api/status`)).json()) as Status;
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      await status();
      break;
    } catch {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error('daemon did not start');
      await sleep(50);
    }
  }
  return { child, mqtt: `mqtt://127.0.0.1:${mqttPort}`, mqttPort, httpPort, status, dataDir };
}

/** The overload rows' view of the daemon (bench/overload.ts): → this InfluxDB, counters from /metrics. */
function overloadContext(influx: Service): BenchContext {
  return {
    root: ROOT,
    track,
    stopChild,
    daemon: async (env, prefix) => {
      const d = await daemon({ INFLUX_URL: influx.url, ...env }, prefix);
      return {
        child: d.child,
        mqttPort: d.mqttPort,
        metrics: async () => {
          // one retry: a keep-alive connection the server closed just then (ECONNRESET) is no answer
          const get = () => fetch(`http://127.0.0.1:${d.httpPort}/metrics`).then((r) => r.text());
          const text = await get().catch(get);
          const v = (name: string) =>
            Number(new RegExp(`^energy_ingest_${name} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
          return {
            received: v('messages_received_total'),
            accepted: v('readings_accepted_total'),
            written: v('points_written_total'),
            dropped: v('qos0_dropped_total'),
            clients: v('connected_clients'),
            memory: {
              rss: v('process_resident_memory_bytes'),
              heapUsed: v('nodejs_heap_size_used_bytes'),
              heapTotal: v('nodejs_heap_size_total_bytes'),
              external: v('nodejs_external_memory_bytes'),
              forcedGc: v('forced_gc_total'),
              backlog: v('pipeline_backlog_points'),
              catchups: v('pipeline_catchups_total'),
              writeErrors: [
                ...text.matchAll(/^energy_ingest_write_errors_total(?:\{[^}]*\})? (\S+)$/gm),
              ].reduce((sum, x) => sum + Number(x[1]), 0),
              spaces: Object.fromEntries(
                [
                  ...text.matchAll(
                    /^energy_ingest_nodejs_heap_space_size_(total|used)_bytes\{space="(\w+)"\} (\S+)$/gm,
                  ),
                ].map((x) => [`${x[2]}_${x[1]}`, Number(x[3])]),
              ),
              waits: Object.fromEntries(
                [...text.matchAll(/^energy_ingest_admission_waits_total\{reason="(\w+)"\} (\S+)$/gm)].map(
                  (x) => [x[1]!, Number(x[2])],
                ),
              ),
            },
          };
        },
        stop: async () => {
          await stopChild(d.child);
          rmSync(d.dataDir, { recursive: true, force: true });
        },
      };
    },
  };
}

async function overload(influx: Service): Promise<Row[]> {
  const ctx = overloadContext(influx);
  // BENCH_OVERLOAD_ROWS=flood,connections,stalled (default all) picks among them
  const pick = new Set((process.env.BENCH_OVERLOAD_ROWS ?? 'flood,connections,stalled').split(','));
  const rows: Row[] = [];
  if (pick.has('flood')) {
    const r = await flood(ctx);
    rows.push(r);
    console.error(`flood: ${r.readings_per_s}/s written, peak RSS ${r.peak_rss_mb} MB`);
  }
  if (pick.has('connections')) {
    const r = await manyConnections(ctx);
    rows.push(...r);
    console.error(`connections: ${r[0]!.note} / bare Aedes: ${r[1]!.note}`);
  }
  if (pick.has('stalled')) {
    const r = await stalledSubscriber(ctx);
    rows.push(...r);
    console.error(`stalled subscriber: p99 ${r[0]!.p99_ms} → ${r[1]!.p99_ms ?? 'not reached'} ms`);
  }
  return rows;
}

async function throughput(
  name: string,
  env: Record<string, string>,
  count = COUNT,
  simArgs: string[] = [],
): Promise<Row> {
  const d = await daemon(env);
  const cpu0 = sample(d.child.pid!);
  const simDone = simulate(d.mqtt, [...FULL_SPEED, '--count', String(count), ...simArgs]);
  let st = await d.status();
  const deadline = performance.now() + 120_000;
  while (st.messages_received === 0 && performance.now() < deadline) st = await d.status();
  const t0 = performance.now(); // first message in: simulator start-up and connects excluded, as for the baseline
  while (st.points_written < count && performance.now() < deadline) {
    await sleep(10);
    st = await d.status();
  }
  const secs = (performance.now() - t0) / 1000;
  const sim = await simDone;
  const s: ProcSample = sample(d.child.pid!);
  await stopChild(d.child);
  rmSync(d.dataDir, { recursive: true, force: true });
  return {
    scenario: name,
    readings: st.points_written,
    readings_per_s: Math.round(st.points_written / secs),
    p50_ms: round(st.ingest_latency_p50_s * 1000),
    p99_ms: round(st.ingest_latency_p99_s * 1000),
    cpu_s: round(s.cpuSeconds - cpu0.cpuSeconds),
    peak_rss_mb: mb(s),
    note: sim.sent !== count ? `simulator sent ${sim.sent}` : undefined,
  };
}

/**
 * Bridge mode (issue 16): QoS 1 readings end to end into InfluxDB 1.x, once
 * through the embedded listener and once through Mosquitto (simulator →
 * Mosquitto → daemon's upstream connections → InfluxDB), in the same run; CPU
 * per reading of the daemon (and of Mosquitto). Also the serialised variant
 * (upstream.maxInflight 1: one PUBACK per fsync per connection, what delaying
 * MQTT.js's handleMessage callback gives) to show why PUBACKs are pipelined.
 */
async function bridgeRun(
  name: string,
  env: Record<string, string>,
  count: number,
  mosquitto?: Mosquitto,
): Promise<Row> {
  const d = await daemon(env);
  if (mosquitto) {
    // every upstream connection subscribed before the first reading is published
    const deadline = Date.now() + 20_000;
    for (;;) {
      const r = (await (await fetch(`http://127.0.0.1:${d.httpPort}/ready`)).json()) as {
        checks: { upstream?: { ok: boolean } };
      };
      if (r.checks.upstream?.ok) break;
      if (Date.now() > deadline) throw new Error('daemon did not subscribe upstream');
      await sleep(50);
    }
  }
  const cpu0 = sample(d.child.pid!);
  const mq0 = mosquitto ? sample(mosquitto.pid()!) : undefined;
  const simDone = simulate(mosquitto ? mosquitto.url : d.mqtt, [
    ...FULL_SPEED,
    '--count',
    String(count),
    '--qos',
    '1',
    '--max-inflight',
    '200',
  ]);
  let st = await d.status();
  const deadline = performance.now() + 180_000;
  while (st.messages_received === 0 && performance.now() < deadline) st = await d.status();
  const t0 = performance.now();
  while (st.points_written < count && performance.now() < deadline) {
    await sleep(10);
    st = await d.status();
  }
  const secs = (performance.now() - t0) / 1000;
  const sim = await simDone;
  const s = sample(d.child.pid!);
  const mq = mosquitto ? sample(mosquitto.pid()!) : undefined;
  await stopChild(d.child);
  rmSync(d.dataDir, { recursive: true, force: true });
  const cpu = s.cpuSeconds - cpu0.cpuSeconds;
  const perReading = (c: number) => `${round((c / Math.max(1, st.points_written)) * 1e6)} µs`;
  const notes = [`daemon CPU ${perReading(cpu)}/reading`];
  if (mq && mq0) notes.push(`Mosquitto CPU ${perReading(mq.cpuSeconds - mq0.cpuSeconds)}/reading`);
  if (sim.sent !== count) notes.push(`simulator sent ${sim.sent}`);
  return {
    scenario: name,
    readings: st.points_written,
    readings_per_s: Math.round(st.points_written / secs),
    p50_ms: round(st.ingest_latency_p50_s * 1000),
    p99_ms: round(st.ingest_latency_p99_s * 1000),
    cpu_s: round(cpu),
    peak_rss_mb: mb(s),
    note: notes.join('; '),
  };
}

async function bridge(influx: Service): Promise<Row[]> {
  const rows: Row[] = [];
  const base = { INFLUX_URL: influx.url, INFLUX_API: 'v1' };
  rows.push(
    await bridgeRun(
      'bridge baseline: embedded listener, QoS 1 (fsync) → InfluxDB 1.x',
      { ...base, INFLUX_DATABASE: 'bench_bridge_embedded' },
      BRIDGE_COUNT,
    ),
  );
  console.error(`embedded qos1: ${rows.at(-1)!.readings_per_s}/s`);
  // Mosquitto sends at most max_inflight_messages (default 20) unacknowledged QoS 1 messages per
  // connection, whatever Receive Maximum we ask for: that, times the connections, is what one fsync
  // group can acknowledge
  const variants: Array<[string, Record<string, string>, number, string[]]> = [
    ['2 connections, maxInflight 100 (defaults)', {}, BRIDGE_COUNT, []],
    ['4 connections, maxInflight 100', { EI_UPSTREAM_CONNECTIONS: '4' }, BRIDGE_COUNT, []],
    [
      '2 connections, Mosquitto max_inflight_messages 200, maxInflight 200',
      { EI_UPSTREAM_MAX_INFLIGHT: '200' },
      BRIDGE_COUNT,
      ['max_inflight_messages 200'],
    ],
    [
      '2 connections, maxInflight 1 (PUBACK held in handleMessage: serialised)',
      { EI_UPSTREAM_MAX_INFLIGHT: '1' },
      Math.min(BRIDGE_COUNT, 10_000),
      [],
    ],
  ];
  for (const [what, env, count, mosquittoConfig] of variants) {
    const m = await startMosquitto(mosquittoConfig);
    try {
      rows.push(
        await bridgeRun(
          `bridge: Mosquitto 2.0 → upstream input, QoS 1 (fsync) → InfluxDB 1.x, ${what}`,
          {
            ...base,
            INFLUX_DATABASE: `bench_bridge_${rows.length}`,
            UPSTREAM_MQTT_URL: m.url,
            EI_MQTT_ENABLED: 'false',
            EI_UPSTREAM_CLIENT_ID: `bench-${rows.length}`,
            ...env,
          },
          count,
          m,
        ),
      );
    } finally {
      await m.stop();
    }
    console.error(`bridge ${what}: ${rows.at(-1)!.readings_per_s}/s`);
  }
  return rows;
}

/**
 * Recovery: InfluxDB is down while RECOVERY_COUNT readings arrive (they wait
 * in the durable log); then it comes back. Measures how fast the backlog drains.
 */
async function recovery(influx: RestartableService): Promise<Row> {
  const d = await daemon({
    INFLUX_URL: influx.url,
    INFLUX_DATABASE: 'bench_recovery',
    EI_PIPELINE_RETRY_MAX_MS: '2000',
  });
  await influx.crash();
  const sim = await simulate(d.mqtt, [...FULL_SPEED, '--count', String(RECOVERY_COUNT)]);
  const backlog = await d.status();
  await influx.restart();
  const cpu0 = sample(d.child.pid!);
  const t0 = performance.now();
  let st = await d.status();
  const deadline = performance.now() + 600_000;
  while (st.points_written < RECOVERY_COUNT && performance.now() < deadline) {
    await sleep(50);
    st = await d.status();
  }
  const secs = (performance.now() - t0) / 1000;
  const s = sample(d.child.pid!);
  await stopChild(d.child);
  rmSync(d.dataDir, { recursive: true, force: true });
  return {
    scenario: `recovery: ${RECOVERY_COUNT} readings held in the log during an outage, drained into InfluxDB 1.x`,
    readings: st.points_written,
    readings_per_s: Math.round(st.points_written / secs),
    cpu_s: round(s.cpuSeconds - cpu0.cpuSeconds),
    peak_rss_mb: mb(s),
    note: `${sim.sent} sent during the outage; ${Math.round((backlog as unknown as { log_bytes: number }).log_bytes / 1024 / 1024)} MiB of log; drained in ${round(secs)} s (includes the first retry after InfluxDB came back)`,
  };
}

async function latency(influx: Service): Promise<Row> {
  const d = await daemon({ INFLUX_URL: influx.url, INFLUX_DATABASE: 'bench_latency' });
  const cpu0 = sample(d.child.pid!);
  // 10×10×25 rooms × 4 types = 10,000 series, one reading each per second
  const sim = await simulate(d.mqtt, [
    '--buildings',
    '10',
    '--floors',
    '10',
    '--rooms',
    '25',
    '--interval-ms',
    '1000',
    '--duration-s',
    '15',
    '--connections',
    '4',
  ]);
  await sleep(2500);
  const st = await d.status();
  const s = sample(d.child.pid!);
  await stopChild(d.child);
  rmSync(d.dataDir, { recursive: true, force: true });
  return {
    scenario: 'latency: 10,000 readings/s for 15 s → InfluxDB 1.x',
    readings: st.points_written,
    readings_per_s: Math.round((sim.sent ?? 0) / (sim.duration_s ?? 1)),
    p50_ms: round(st.ingest_latency_p50_s * 1000),
    p99_ms: round(st.ingest_latency_p99_s * 1000),
    cpu_s: round(s.cpuSeconds - cpu0.cpuSeconds),
    peak_rss_mb: mb(s),
  };
}

/** 10,000 readings/s with 1% crossing a threshold: publish → Redis PUBLISH and → MQTT subscriber. */
async function alerts(): Promise<Row[]> {
  const redis = await startRedis();
  try {
    const d = await daemon({
      REDIS_URL: redis.url,
      ENERGY_INGEST_CONFIG: writeBenchConfig(),
    });
    const cpu0 = sample(d.child.pid!);
    const r = await alertLatency(d.mqtt, redis.url);
    const s = sample(d.child.pid!);
    await stopChild(d.child);
    rmSync(d.dataDir, { recursive: true, force: true });
    const common = {
      readings: r.readings,
      readings_per_s: r.readingsPerS,
      cpu_s: round(s.cpuSeconds - cpu0.cpuSeconds),
      peak_rss_mb: mb(s),
    };
    return [
      {
        scenario: 'alerts: 10,000 readings/s, 1% crossing (10 rules per series) → Redis PUBLISH',
        ...common,
        p50_ms: r.redis.p50,
        p99_ms: r.redis.p99,
        note: `${r.redis.all} of ${r.events} crossings received as events; percentiles over the ${r.redis.n} after a 3 s warm-up (warm-up max ${r.warmupMaxMs} ms while 10,000 series are first seen); latency = arrival − reading timestamp (its send time)`,
      },
      {
        scenario: 'alerts: same run → MQTT subscriber on alerts/#',
        ...common,
        p50_ms: r.mqtt.p50,
        p99_ms: r.mqtt.p99,
        note: `${r.mqtt.all} of ${r.events} crossings received as events (the empty retained deletes not counted); ${r.mqtt.n} after the warm-up`,
      },
    ];
  } finally {
    await redis.stop();
  }
}

function alertMicro(): Row {
  const c = alertEvalCost();
  return {
    scenario: 'alert evaluation, 10 rules per series, 10,000 series (in process, micro-benchmark)',
    readings: 2_000_000,
    readings_per_s: Math.round(1e9 / c.tenRulesNs),
    note: `${c.tenRulesNs} ns per reading including the loop; the same loop with no matching rule: ${c.baselineNs} ns`,
  };
}

/**
 * Issue 17: the latest-readings cache at ~50,000 readings/s (cache off, then
 * on, same Redis), and the forecast model's backtest on generated roll-ups.
 */
async function latestCache(): Promise<Row[]> {
  const redis = await startRedis();
  const secs = Number(process.env.BENCH_LATEST_S ?? 15);
  const start = async (env: Record<string, string>) => {
    const d = await daemon(env);
    return {
      ...d,
      stop: async () => {
        await stopChild(d.child);
        rmSync(d.dataDir, { recursive: true, force: true });
      },
    };
  };
  try {
    const rows: Row[] = [];
    for (const on of [false, true]) {
      const r = await latestCacheRun(redis.url, on, secs, start, simulate);
      console.error(`latest cache ${on ? 'on' : 'off'}: ${JSON.stringify(r)}`);
      rows.push({
        scenario: `latest readings cache ${on ? 'on' : 'off'}: ~50,000 readings/s, 10,000 series, Redis configured → file sink`,
        readings: r.readings,
        readings_per_s: r.readingsPerS,
        cpu_s: r.cpuS,
        peak_rss_mb: r.peakRssMb,
        note:
          `${r.cpuUsPerReading} µs daemon CPU per reading; Redis ${r.redisCommandsPerS} commands/s ` +
          `(${r.redisEvalPerS} EVALSHA/s, Redis CPU ${r.redisCpuS} s)` +
          (on ? `; ${r.hashFields} hash fields in cache:latest:*` : ''),
      });
    }
    const m = await latestCacheMicro(redis.url);
    console.error(`latest cache micro: ${JSON.stringify(m)}`);
    rows.push({
      scenario:
        'latest readings cache, in process: 50,000 readings/s over 10,000 series (10 buildings), one flush per second → Redis',
      readings: 20 * 50_000,
      readings_per_s: 50_000,
      note: `${m.nsPerReading} ns CPU per reading (record + flush, minus the same loop without the cache); one flush ${m.flushCpuMs} ms CPU; Redis ${m.commandsPerFlush} commands per second (${m.evalsPerFlush} EVALSHA: one per building, whatever the reading rate)`,
    });
    const f = forecastAccuracy();
    console.error(`forecast: ${JSON.stringify(f)}`);
    rows.push({
      scenario:
        'forecast: 1,000 generated buildings × 4 weeks of hourly kWh, 7-day rolling backtest (in process)',
      readings: f.hours,
      readings_per_s: Math.round((1000 / f.ms) * 1000),
      note: `model MAPE ${f.mape}% vs seasonal-naive (same hour yesterday) ${f.baselineMape}%; 80% interval held ${Math.round(f.coverage * 100)}% of held-out hours; forecast + backtest of all 1,000 in ${f.ms} ms (readings/s column: buildings/s)`,
    });
    return rows;
  } finally {
    await redis.stop();
  }
}

const round = (n: number) => Math.round(n * 10) / 10;
const mb = (s: ProcSample) => Math.round(s.peakRssBytes / 1024 / 1024);

function markdown(rows: Row[], meta: Record<string, unknown>): string {
  const head =
    '| scenario | readings | readings/s | p50 ms | p99 ms | daemon CPU s | daemon peak RSS MB | vs bare Aedes | vs InfluxDB direct | note |';
  const lines = rows.map(
    (r) =>
      `| ${r.scenario} | ${r.readings} | ${r.readings_per_s} | ${r.p50_ms ?? ''} | ${r.p99_ms ?? ''} | ${r.cpu_s ?? ''} | ${r.peak_rss_mb ?? ''} | ${r.vs_bare_aedes !== undefined ? `${Math.round(r.vs_bare_aedes * 100)}%` : ''} | ${r.vs_influx_direct !== undefined ? `${Math.round(r.vs_influx_direct * 100)}%` : ''} | ${r.note ?? ''} |`,
  );
  return [
    `# Benchmark ${meta.date}`,
    '',
    `${meta.machine}; ${meta.count ?? COUNT} readings per throughput scenario.`,
    '',
    head,
    '|---|---|---|---|---|---|---|---|---|---|',
    ...lines,
    '',
  ].join('\n');
}

/*
 * cluster (issue 14 item 8): the same offered load (20,000 readings/s: 20,000
 * series at 1 Hz for 15 s → InfluxDB 1.x) on one standalone node, then split
 * over two CLUSTER_MODE=redis nodes on this machine (half the series each),
 * then the same two nodes with an MQTT subscriber on `sensors/#` on node B. Rows:
 * aggregate stored readings/s and CPU µs per stored reading per node. The
 * subscriber row counts what B's subscriber got beyond B's own readings: that
 * is cross-node delivery from A (0 while the build has no cross-node forwarding).
 *
 * A node at half the rate pays its fixed per-second costs (timers, metrics,
 * heartbeats, GC) over half the readings, so the fair measure of what cluster
 * mode costs is a standalone node at the per-node load (10,000 readings/s):
 * the two-node rows give their CPU per reading as a ratio to it, and to the
 * 20,000/s row. `idle` rows give each kind of node's CPU per second with no
 * load, and `bare-sub` is bare Aedes delivering the subscriber row's traffic
 * (20,000 readings/s in, every one out to one `sensors/#` subscriber).
 * `alerts` is the alert ownership of src/alerts/clusterState.ts in process (bench/clusterAlerts.ts).
 * `r10` is one redis-mode node at 10,000/s with its peer idle: the same machine load as the
 * s10 row, so the fair measure of what cluster mode costs (the pair rows add two daemons and
 * two simulators competing for two cores).
 * BENCH_CLUSTER_ROWS=idle,s20,s10,r10,pair,sub,bare-sub,alerts picks rows (default: those; also
 * s10-noredis: the standalone row without REDIS_URL);
 * BENCH_CLUSTER_PROF=DIR writes a --cpu-prof profile of every daemon into DIR.
 */
async function cluster(influx: Service): Promise<Row[]> {
  const redis = await startRedis();
  const rows: Row[] = [];
  const DURATION_S = 15;
  const IDLE_S = 15;
  const pick = new Set(
    (process.env.BENCH_CLUSTER_ROWS ?? 'idle,s20,s10,r10,pair,sub,bare-sub,alerts')
      .split(',')
      .map((s) => s.trim()),
  );
  const prof = process.env.BENCH_CLUSTER_PROF;
  const profFlags = prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : [];
  const node = (env: Record<string, string>) => daemon(env, [], profFlags);
  // 10 buildings × 10 floors × rooms × 4 types, 1 reading/s each
  const load = (rooms: number) => [
    '--buildings',
    '10',
    '--floors',
    '10',
    '--rooms',
    String(rooms),
    '--interval-ms',
    '1000',
    '--duration-s',
    String(DURATION_S),
    '--connections',
    '4',
  ];
  type Node = Awaited<ReturnType<typeof daemon>>;
  const perReadingUs = (cpuS: number, n: number) => (n > 0 ? Math.round((cpuS / n) * 1e6 * 10) / 10 : 0);
  const ratio = (us: number, base: number | undefined) =>
    base ? `${Math.round((us / base) * 100)}%` : 'n/a';
  async function measure(nodes: Node[], sims: Array<[Node, string[]]>) {
    const cpu0 = nodes.map((n) => sample(n.child.pid!));
    const t0 = performance.now();
    const sent = await Promise.all(sims.map(([n, args]) => simulate(n.mqtt, args)));
    await sleep(2500);
    const secs = (performance.now() - t0) / 1000 - 2.5;
    const st = await Promise.all(nodes.map((n) => n.status()));
    const s = nodes.map((n) => sample(n.child.pid!));
    const cpu = s.map((x, i) => round(x.cpuSeconds - cpu0[i]!.cpuSeconds));
    return { sent: sent.reduce((a, r) => a + (r.sent ?? 0), 0), secs, st, cpu, s };
  }
  const stopNodes = async (nodes: Node[]) => {
    for (const n of nodes) {
      await stopChild(n.child);
      rmSync(n.dataDir, { recursive: true, force: true });
    }
  };
  // standalone nodes get the same Redis as the cluster nodes (REDIS_URL turns on the latest
  // readings cache and the alerts' Redis output): the difference measured is CLUSTER_MODE alone
  const standaloneEnv = (db: string, withRedis = true): Record<string, string> => ({
    INFLUX_URL: influx.url,
    INFLUX_DATABASE: db,
    ...(withRedis ? { REDIS_URL: redis.url } : {}),
  });
  const redisEnv = (id: string) => ({
    INFLUX_URL: influx.url,
    INFLUX_DATABASE: 'bench_cluster_2',
    CLUSTER_MODE: 'redis',
    CLUSTER_NODE_ID: id,
    REDIS_URL: redis.url,
  });
  /** one standalone node at `rooms` × 400 readings/s; returns µs CPU per stored reading */
  async function standalone(rooms: number, label: string, withRedis = true): Promise<number> {
    const a = await node(standaloneEnv(`bench_cluster_${rooms}`, withRedis));
    try {
      const m = await measure([a], [[a, load(rooms)]]);
      const written = m.st[0]!.points_written;
      const us = perReadingUs(m.cpu[0]!, written);
      rows.push({
        scenario: `cluster: one standalone node${withRedis ? '' : ' without Redis'}, ${label} readings/s offered for 15 s → InfluxDB 1.x`,
        readings: written,
        readings_per_s: Math.round(m.sent / DURATION_S),
        cpu_s: m.cpu[0],
        peak_rss_mb: mb(m.s[0]!),
        note: `${us} µs CPU per stored reading; ${m.sent} sent`,
      });
      return us;
    } finally {
      await stopNodes([a]);
    }
  }
  try {
    if (pick.has('idle')) {
      // fixed per-second costs: no client, no reading, after a 3 s settle
      const idle = async (nodes: Node[]) => {
        await sleep(3000);
        const c0 = nodes.map((n) => sample(n.child.pid!).cpuSeconds);
        const t0 = performance.now();
        await sleep(IDLE_S * 1000);
        const secs = (performance.now() - t0) / 1000;
        return nodes.map((n, i) => Math.round(((sample(n.child.pid!).cpuSeconds - c0[i]!) / secs) * 1000));
      };
      const s = await node(standaloneEnv('bench_cluster_idle'));
      const [ms] = await idle([s]);
      await stopNodes([s]);
      const a = await node(redisEnv('bench-a'));
      const b = await node(redisEnv('bench-b'));
      const [ma, mb_] = await idle([a, b]);
      await stopNodes([a, b]);
      rows.push({
        scenario: `cluster: idle nodes, no load, ${IDLE_S} s`,
        readings: 0,
        readings_per_s: 0,
        note: `CPU ms per second: standalone ${ms}; two CLUSTER_MODE=redis nodes A ${ma}, B ${mb_}`,
      });
    }
    const s20 = pick.has('s20') ? await standalone(50, '20,000') : undefined;
    const s10 = pick.has('s10') ? await standalone(25, 'the per-node load, 10,000') : undefined;
    if (pick.has('s10-noredis')) await standalone(25, 'the per-node load, 10,000', false);
    if (pick.has('r10')) {
      // one CLUSTER_MODE=redis node at the per-node load, its peer idle: the cluster's cost with
      // the machine as busy as in the standalone row (one simulator, one loaded daemon)
      const a = await node(redisEnv('bench-a'));
      const b = await node(redisEnv('bench-b'));
      try {
        const m = await measure([a], [[a, load(25)]]);
        const written = m.st[0]!.points_written;
        const us = perReadingUs(m.cpu[0]!, written);
        rows.push({
          scenario: 'cluster: one CLUSTER_MODE=redis node at 10,000 readings/s, its peer idle',
          readings: written,
          readings_per_s: Math.round(m.sent / DURATION_S),
          cpu_s: m.cpu[0],
          peak_rss_mb: mb(m.s[0]!),
          note: `${us} µs CPU per stored reading; vs standalone at 10,000/s ${ratio(us, s10)}; ${m.sent} sent`,
        });
      } finally {
        await stopNodes([a, b]);
      }
    }
    for (const withSubscriber of [false, true]) {
      if (!pick.has(withSubscriber ? 'sub' : 'pair')) continue;
      const a = await node(redisEnv('bench-a'));
      const b = await node(redisEnv('bench-b'));
      let received = 0;
      let sub: { endAsync(): Promise<void> } | null = null;
      try {
        if (withSubscriber) {
          const mqtt = (await import('mqtt')).default;
          const c = await mqtt.connectAsync(b.mqtt, { protocolVersion: 4 });
          c.on('message', () => received++);
          await c.subscribeAsync('sensors/#', { qos: 0 });
          sub = c;
          await sleep(1000); // a cluster-wide view of subscriptions needs a moment to learn it
        }
        const m = await measure(
          [a, b],
          [
            [a, load(25)],
            [b, load(25)],
          ],
        );
        // what B still delivers after the CPU sample is late, not lost: wait until it stops coming
        let settled = received;
        for (let i = 0; withSubscriber && i < 30; i++) {
          await sleep(500);
          if (received === settled) break;
          settled = received;
        }
        await sub?.endAsync();
        // messages not delivered, by where they were dropped (cross-node queues, a cut-off subscriber)
        const drops = async (n: Node) => {
          const text = await (await fetch(`http://127.0.0.1:${n.httpPort}/metrics`)).text();
          return [
            ...text.matchAll(
              /^energy_ingest_(cluster_dropped_total\{reason="(\w+)"\}|slow_consumers_disconnected_total) (\S+)$/gm,
            ),
          ]
            .filter((x) => Number(x[3]) > 0)
            .map((x) => `${x[2] ?? 'slow_consumer_cut_off'} ${x[3]}`)
            .join(', ');
        };
        const [da, db] = [await drops(a), await drops(b)];
        const [wa, wb] = [m.st[0]!.points_written, m.st[1]!.points_written];
        const [ua, ub] = [perReadingUs(m.cpu[0]!, wa), perReadingUs(m.cpu[1]!, wb)];
        const fromA = Math.max(0, received - m.st[1]!.readings_accepted);
        rows.push({
          scenario: withSubscriber
            ? 'cluster: same two nodes, an MQTT subscriber on sensors/# on node B'
            : 'cluster: two CLUSTER_MODE=redis nodes, same 20,000 readings/s split over both',
          readings: wa + wb,
          readings_per_s: Math.round(m.sent / DURATION_S),
          cpu_s: round(m.cpu[0]! + m.cpu[1]!),
          peak_rss_mb: Math.max(mb(m.s[0]!), mb(m.s[1]!)),
          note:
            `node A ${ua} µs, node B ${ub} µs CPU per stored reading ` +
            `(A ${wa}, B ${wb} stored; ${m.sent} sent); ` +
            `vs standalone at 10,000/s: A ${ratio(ua, s10)}, B ${ratio(ub, s10)}; ` +
            `vs standalone at 20,000/s: A ${ratio(ua, s20)}, B ${ratio(ub, s20)}` +
            (withSubscriber
              ? `; B's subscriber got ${received}: ${fromA} of them published on A` +
                (fromA === 0 ? ' (no cross-node forwarding in this build)' : '') +
                `; dropped: A ${da || 'none'}, B ${db || 'none'}` +
                `; B ${perReadingUs(m.cpu[1]!, received)} µs CPU per delivered message`
              : ''),
        });
      } finally {
        await stopNodes([a, b]);
      }
    }
    if (pick.has('bare-sub')) rows.push(await bareAedesSubscriber(load(50), DURATION_S));
    if (pick.has('alerts')) {
      // with alert rules, a redis-mode node owns its series in Redis (src/alerts/clusterState.ts)
      const c = await alertClusterCost(redis.url);
      rows.push({
        scenario:
          'cluster: alert ownership in process, 10,000 series with rules at 1 reading/s each, 20 s (leases re-asserted every 5 s)',
        readings: 200_000,
        readings_per_s: 10_000,
        note: `${c.usPerReading} µs CPU per reading (admit + lease refreshes, this process); ${c.claimsPerS} lease refreshes/s; Redis ${c.commandsPerS} commands/s (scripts' own GET/SET included)`,
      });
    }
  } finally {
    await redis.stop();
  }
  return rows;
}

/** CPU µs per reading from a row's CPU seconds. */
const usPer = (r: Row) => (r.cpu_s !== undefined && r.readings > 0 ? (r.cpu_s / r.readings) * 1e6 : 0);
const ratioNote = (r: Row, base: Row, what: string) =>
  `${usPer(r).toFixed(1)} µs CPU per reading; ${(usPer(r) / usPer(base)).toFixed(2)}× bare Aedes ${what} (${usPer(base).toFixed(1)} µs per message)`;

/**
 * Issue 15: CPU per reading against bare Aedes per message, in the same run:
 * at full speed (QoS 0 and QoS 1 with fsync → InfluxDB 1.x) and at a fixed
 * 20,000 readings/s (bench/fixedLoad.ts; CPU counted until every reading is
 * stored). `fullSpeedQos0` are the main run's rows when it has them.
 */
async function efficiency(influx: Service, fullSpeedQos0?: { bare: Row; daemon: Row }): Promise<Row[]> {
  const rows: Row[] = [];
  if (fullSpeedQos0) {
    fullSpeedQos0.daemon.note = ratioNote(fullSpeedQos0.daemon, fullSpeedQos0.bare, 'QoS 0');
  } else {
    const bare = await bareAedes(0);
    const daemon0 = await throughput('daemon QoS 0 → InfluxDB 1.x', {
      INFLUX_URL: influx.url,
      INFLUX_DATABASE: 'bench_eff0',
    });
    daemon0.note = ratioNote(daemon0, bare, 'QoS 0');
    rows.push(bare, daemon0);
  }
  const bare1 = await bareAedes(1, QOS1_COUNT);
  const daemon1 = await throughput(
    'daemon QoS 1, durability fsync → InfluxDB 1.x',
    { INFLUX_URL: influx.url, INFLUX_DATABASE: 'bench_eff1' },
    QOS1_COUNT,
    ['--qos', '1', '--max-inflight', '200'],
  );
  daemon1.note = ratioNote(daemon1, bare1, 'QoS 1');
  daemon1.vs_bare_aedes = daemon1.readings_per_s / bare1.readings_per_s;
  rows.push(bare1, daemon1);
  const seconds = Number(process.env.BENCH_FIXED_S ?? 15);
  for (const qos of [0, 1] as const) {
    const load = { qos, seconds, rooms: 50 };
    const b = await bareRun(load);
    // the daemon silences disabled debug loggers (src/quietDebug.ts); bare Aedes so silenced too
    const bq = await bareRun({ ...load, quietDebug: true });
    const d = await daemonRun(influx.url, { ...load, env: { INFLUX_DATABASE: `bench_fixed${qos}` } });
    const offered = `20,000 readings/s for ${seconds} s, QoS ${qos}`;
    rows.push(
      {
        scenario: `efficiency: bare Aedes, ${offered}`,
        readings: b.readings,
        readings_per_s: Math.round(b.readings / seconds),
        peak_rss_mb: b.peakRssMb,
        note: `${b.cpuUsPerReading.toFixed(1)} µs CPU per message (${b.sent} sent)`,
      },
      {
        scenario: `efficiency: bare Aedes with quiet debug loggers, ${offered}`,
        readings: bq.readings,
        readings_per_s: Math.round(bq.readings / seconds),
        peak_rss_mb: bq.peakRssMb,
        note: `${bq.cpuUsPerReading.toFixed(1)} µs CPU per message (${bq.sent} sent)`,
      },
      {
        scenario: `efficiency: daemon → InfluxDB 1.x, ${offered}${qos ? ', durability fsync' : ''}`,
        readings: d.readings,
        readings_per_s: Math.round(d.readings / seconds),
        peak_rss_mb: d.peakRssMb,
        note:
          `${d.cpuUsPerReading.toFixed(1)} µs CPU per stored reading, counted until all stored; ` +
          `${(d.cpuUsPerReading / b.cpuUsPerReading).toFixed(2)}× bare Aedes, ` +
          `${(d.cpuUsPerReading / bq.cpuUsPerReading).toFixed(2)}× bare Aedes with quiet loggers (${d.sent} sent)`,
      },
    );
  }
  return rows;
}

/** bare Aedes (no hooks), the subscriber row's traffic: 20,000 readings/s in, each to one sensors/# subscriber */
async function bareAedesSubscriber(load: string[], durationS: number): Promise<Row> {
  const child = track(
    spawn('node', [join(ROOT, 'dist', 'bench', 'bareBroker.js'), '0'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    }),
  );
  let port = 0;
  child.stdout!.on('data', (b: Buffer) => {
    const m = /^port (\d+)$/m.exec(b.toString());
    if (m) port = Number(m[1]);
  });
  while (!port) await sleep(20);
  const mqtt = (await import('mqtt')).default;
  const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4 });
  let received = 0;
  c.on('message', () => received++);
  await c.subscribeAsync('sensors/#', { qos: 0 });
  const cpu0 = sample(child.pid!);
  const r = await simulate(`mqtt://127.0.0.1:${port}`, load);
  await sleep(2500);
  const s = sample(child.pid!);
  await c.endAsync();
  await stopChild(child);
  const cpu = round(s.cpuSeconds - cpu0.cpuSeconds);
  return {
    scenario:
      'cluster baseline: bare Aedes, 20,000 readings/s in, each delivered to one sensors/# subscriber',
    readings: received,
    readings_per_s: Math.round((r.sent ?? 0) / durationS),
    cpu_s: cpu,
    peak_rss_mb: mb(s),
    note: `${received > 0 ? Math.round((cpu / received) * 1e7) / 10 : 0} µs CPU per delivered message (receipt included); ${r.sent} sent`,
  };
}

async function main(): Promise<void> {
  if (process.env.BENCH_ONLY === 'alerts') {
    // quick loop while working on alerts; the report is printed, not written
    const rows = [alertMicro(), ...(await alerts())];
    console.log(markdown(rows, { date: new Date().toISOString(), machine: 'BENCH_ONLY=alerts' }));
    for (const c of children) await stopChild(c);
    return;
  }
  if (process.env.BENCH_ONLY === 'cluster') {
    // issue 14's rows alone; printed, not written (a partial table must not replace latest.md)
    const influx = await startInflux1();
    try {
      const rows = await cluster(influx);
      console.log(markdown(rows, { date: new Date().toISOString(), machine: 'BENCH_ONLY=cluster' }));
    } finally {
      for (const c of children) await stopChild(c);
      await influx.stop();
    }
    return;
  }
  if (process.env.BENCH_ONLY === 'bridge') {
    // issue 16's rows alone; printed, not written (a partial table must not replace latest.md)
    const influx = await startInflux1();
    try {
      const rows = await bridge(influx);
      const { cpus } = await import('node:os');
      console.log(
        markdown(rows, {
          date: new Date().toISOString(),
          machine: `BENCH_ONLY=bridge, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'} (shared), Node ${process.version}`,
          count: BRIDGE_COUNT,
        }),
      );
    } finally {
      for (const c of children) await stopChild(c);
      await influx.stop();
    }
    return;
  }
  if (process.env.BENCH_ONLY === 'efficiency') {
    // issue 15's rows alone; printed, not written
    const influx = await startInflux1();
    try {
      const rows = await efficiency(influx);
      console.log(markdown(rows, { date: new Date().toISOString(), machine: 'BENCH_ONLY=efficiency' }));
    } finally {
      for (const c of children) await stopChild(c);
      await influx.stop();
    }
    return;
  }
  if (process.env.BENCH_ONLY === 'latest') {
    // issue 17's rows alone; printed, not written
    try {
      const rows = await latestCache();
      console.log(markdown(rows, { date: new Date().toISOString(), machine: 'BENCH_ONLY=latest' }));
    } finally {
      for (const c of children) await stopChild(c);
    }
    return;
  }
  if (process.env.BENCH_ONLY === 'overload') {
    // the issue-11 rows alone; printed, not written (a partial table must not replace latest.md)
    const influx = await startInflux1();
    try {
      const rows = await overload(influx);
      console.log(markdown(rows, { date: new Date().toISOString(), machine: 'BENCH_ONLY=overload' }));
    } finally {
      for (const c of children) await stopChild(c);
      await influx.stop();
    }
    return;
  }
  // first, while nothing else runs: an in-process micro-benchmark
  const micro = alertMicro();
  console.error(`alert evaluation: ${micro.note}`);
  const influx = await startInflux1();
  try {
    const bare = await bareAedes();
    console.error(`bare aedes: ${bare.readings_per_s}/s`);
    const direct = await influxDirect(influx);
    console.error(`influx direct: ${direct.readings_per_s}/s`);
    const file = await throughput('daemon QoS 0 → file sink', {});
    console.error(`file: ${file.readings_per_s}/s`);
    const db = await throughput('daemon QoS 0 → InfluxDB 1.x', {
      INFLUX_URL: influx.url,
      INFLUX_DATABASE: 'bench_e2e',
    });
    console.error(`influx: ${db.readings_per_s}/s`);
    const lat = await latency(influx);
    console.error(`latency: p50 ${lat.p50_ms} ms p99 ${lat.p99_ms} ms`);
    const q1 = ['--qos', '1', '--max-inflight', '200'];
    const qos1Fsync = await throughput('daemon QoS 1, durability fsync → file sink', {}, QOS1_COUNT, q1);
    console.error(`qos1 fsync: ${qos1Fsync.readings_per_s}/s`);
    const qos1Relaxed = await throughput(
      'daemon QoS 1, durability relaxed → file sink',
      { EI_PIPELINE_DURABILITY: 'relaxed' },
      QOS1_COUNT,
      q1,
    );
    console.error(`qos1 relaxed: ${qos1Relaxed.readings_per_s}/s`);
    const rec = await recovery(influx);
    console.error(`recovery: ${rec.readings_per_s}/s`);
    for (const r of [file, db, qos1Fsync, qos1Relaxed])
      r.vs_bare_aedes = r.readings_per_s / bare.readings_per_s;
    for (const r of [db, rec]) r.vs_influx_direct = r.readings_per_s / direct.readings_per_s;
    const alertRows = await alerts();
    console.error(`alerts: p99 redis ${alertRows[0]!.p99_ms} ms, mqtt ${alertRows[1]!.p99_ms} ms`);
    const overloadRows = await overload(influx);
    const bridgeRows = await bridge(influx);
    const latestRows = await latestCache();
    const clusterRows = await cluster(influx);
    const efficiencyRows = await efficiency(influx, { bare, daemon: db });
    const rows = [
      bare,
      direct,
      file,
      db,
      lat,
      qos1Fsync,
      qos1Relaxed,
      rec,
      ...alertRows,
      ...overloadRows,
      ...bridgeRows,
      ...latestRows,
      ...clusterRows,
      ...efficiencyRows,
      micro,
    ];
    const { cpus } = await import('node:os');
    const meta = {
      date: new Date().toISOString(),
      machine: `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}`,
      count: COUNT,
    };
    const dir = join(ROOT, 'bench', 'results');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'latest.json'), `${JSON.stringify({ ...meta, rows }, null, 2)}\n`);
    const md = markdown(rows, meta);
    writeFileSync(join(dir, 'latest.md'), md);
    console.log(md);
  } finally {
    for (const c of children) await stopChild(c);
    await influx.stop();
  }
}

await main();
