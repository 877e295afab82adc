import mqtt, { type MqttClient } from 'mqtt';
import { parseArgs } from '../src/cli/args.js';
import { IngestError } from '../src/errors.js';
import { canonicalBuildingKey } from '../src/ingest/building.js';
import { anomalyFor, badMessage, type Series, unitFor, valueFor } from './profiles.js';

// energy-ingest simulate (contract section 13). Publishes one reading per
// series every --interval-ms (0: as fast as the broker takes them), prints a
// progress line on stderr each second and one JSON summary line on stdout.

const SPECS = {
  url: { kind: 'string' },
  buildings: { kind: 'int', min: 1, max: 100000 },
  floors: { kind: 'int', min: 1, max: 1000 },
  rooms: { kind: 'int', min: 1, max: 10000 },
  types: { kind: 'string' },
  'interval-ms': { kind: 'int', min: 0 },
  'duration-s': { kind: 'number', min: 0 },
  qos: { kind: 'int', min: 0, max: 2 },
  username: { kind: 'string' },
  password: { kind: 'string' },
  'bad-rate': { kind: 'number', min: 0, max: 1 },
  'anomaly-rate': { kind: 'number', min: 0, max: 1 },
  connections: { kind: 'int', min: 1, max: 10000 },
  count: { kind: 'int', min: 1 },
  'max-inflight': { kind: 'int', min: 1, max: 65535 },
  quiet: { kind: 'flag' },
  config: { kind: 'string' },
  help: { kind: 'flag' },
} as const;

const HELP = `usage: energy-ingest simulate [--url mqtt://127.0.0.1:1883] [--buildings 3] [--floors 5] [--rooms 4]
  [--types temperature,humidity,power,illuminance] [--interval-ms 1000] [--duration-s 60] [--qos 1]
  [--username U --password P] [--bad-rate 0.01] [--anomaly-rate 0.001] [--connections C]
  [--count N] [--max-inflight 1000] [--quiet]
--interval-ms 0 publishes as fast as the broker accepts; --duration-s 0 runs until interrupted.`;

export interface SimulateSummary {
  sent: number;
  acked: number;
  errors: number;
  bad_sent: number;
  anomalies: number;
  series: number;
  connections: number;
  qos: number;
  duration_s: number;
  rate_per_s: number;
}

export interface SimulateOptions {
  url: string;
  buildings: number;
  floors: number;
  rooms: number;
  types: string[];
  intervalMs: number;
  durationS: number;
  qos: 0 | 1 | 2;
  username?: string;
  password?: string;
  badRate: number;
  anomalyRate: number;
  connections: number;
  count?: number;
  maxInflight: number;
  quiet: boolean;
}

export function simulateOptions(argv: readonly string[]): SimulateOptions | 'help' {
  const { options: o, positional } = parseArgs(argv, SPECS);
  if (o.help) return 'help';
  if (positional.length) throw new IngestError('EI_CLI_USAGE', `unexpected argument "${positional[0]}"`);
  const types = String(o.types ?? 'temperature,humidity,power,illuminance')
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  if (!types.length) throw new IngestError('EI_CLI_USAGE', 'option --types needs at least one sensor type');
  const url = String(o.url ?? 'mqtt://127.0.0.1:1883');
  if (!/^(mqtts?|wss?|tcp):\/\//.test(url))
    throw new IngestError(
      'EI_CLI_USAGE',
      `option --url must be mqtt://, mqtts://, ws:// or wss:// (got "${url}")`,
    );
  return {
    url,
    buildings: (o.buildings as number) ?? 3,
    floors: (o.floors as number) ?? 5,
    rooms: (o.rooms as number) ?? 4,
    types,
    intervalMs: (o['interval-ms'] as number) ?? 1000,
    durationS: (o['duration-s'] as number) ?? 60,
    qos: ((o.qos as number) ?? 1) as 0 | 1 | 2,
    username: o.username as string | undefined,
    password: o.password as string | undefined,
    badRate: (o['bad-rate'] as number) ?? 0,
    anomalyRate: (o['anomaly-rate'] as number) ?? 0,
    connections: (o.connections as number) ?? 1,
    count: o.count as number | undefined,
    maxInflight: (o['max-inflight'] as number) ?? 1000,
    quiet: Boolean(o.quiet),
  };
}

export async function runSimulate(argv: readonly string[]): Promise<number> {
  let opts: SimulateOptions | 'help';
  try {
    opts = simulateOptions(argv);
  } catch (err) {
    console.error(`energy-ingest simulate: ${(err as Error).message}`);
    return 2;
  }
  if (opts === 'help') {
    console.log(HELP);
    return 0;
  }
  const summary = await simulate(opts);
  console.log(JSON.stringify(summary));
  return summary.errors > 0 && summary.acked === 0 ? 1 : 0;
}

export async function simulate(opts: SimulateOptions, signal?: AbortSignal): Promise<SimulateSummary> {
  const series: Series[] = [];
  for (let b = 1; b <= opts.buildings; b++)
    for (let f = 1; f <= opts.floors; f++)
      for (let r = 1; r <= opts.rooms; r++)
        for (const type of opts.types) series.push({ building: b, floor: f, room: r, type });
  const topics = series.map(
    (s) =>
      `sensors/${canonicalBuildingKey(s.building)}/${s.floor}/room_${s.floor}${String(s.room).padStart(2, '0')}/${s.type}`,
  );
  const lastTs = new Float64Array(series.length);

  const stats = { sent: 0, acked: 0, errors: 0, bad: 0, anomalies: 0 };
  const clients: MqttClient[] = [];
  const runId = Math.random().toString(36).slice(2, 8);
  for (let i = 0; i < opts.connections; i++) {
    const client = await mqtt.connectAsync(opts.url, {
      clientId: `sim-${runId}-${i}`,
      username: opts.username,
      password: opts.password,
      protocolVersion: 4,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
    });
    client.on('error', () => stats.errors++);
    // at full speed mqtt.js parks one 'drain' listener per publish waiting for the socket
    client.stream?.setMaxListeners?.(0);
    clients.push(client);
  }

  const started = performance.now();
  const deadline = opts.durationS > 0 ? started + opts.durationS * 1000 : Number.POSITIVE_INFINITY;
  let stopped = false;
  const stop = () => {
    stopped = true;
  };
  const onSigint = () => stop();
  process.once('SIGINT', onSigint);
  signal?.addEventListener('abort', stop);
  let lastSent = 0;
  const progress = setInterval(() => {
    const elapsed = (performance.now() - started) / 1000;
    if (!opts.quiet) {
      process.stderr.write(
        `sent=${stats.sent} acked=${stats.acked} rate=${stats.sent - lastSent}/s errors=${stats.errors} elapsed=${elapsed.toFixed(0)}s\n`,
      );
    }
    lastSent = stats.sent;
  }, 1000);

  const inflight = new Int32Array(clients.length);
  const waiters: Array<(() => void) | null> = clients.map(() => null);
  const done = () =>
    stopped || performance.now() >= deadline || (opts.count !== undefined && stats.sent >= opts.count);

  const publishOne = (idx: number) => {
    const s = series[idx]!;
    const ci = idx % clients.length;
    const client = clients[ci]!;
    const rnd = Math.random;
    const now = Date.now();
    const ts = Math.max(now, lastTs[idx]! + 1);
    lastTs[idx] = ts;
    let topic = topics[idx]!;
    let payload: string;
    if (opts.badRate > 0 && rnd() < opts.badRate) {
      const bad = badMessage(s, rnd);
      if (bad.topicSuffix) topic += bad.topicSuffix;
      payload = bad.payload;
      stats.bad++;
    } else {
      let value = valueFor(s, ts, rnd);
      if (opts.anomalyRate > 0 && rnd() < opts.anomalyRate) {
        value = anomalyFor(s, rnd);
        stats.anomalies++;
      }
      const unit = unitFor(s.type);
      payload = JSON.stringify(unit ? { value, unit, timestamp: ts } : { value, timestamp: ts });
    }
    inflight[ci]!++;
    stats.sent++;
    client.publish(topic, payload, { qos: opts.qos }, (err) => {
      inflight[ci]!--;
      if (err) stats.errors++;
      else stats.acked++;
      const w = waiters[ci];
      if (w && inflight[ci]! < opts.maxInflight / 2) {
        waiters[ci] = null;
        w();
      }
    });
  };

  if (opts.intervalMs === 0) {
    // Full speed: each connection keeps up to maxInflight unacknowledged publishes.
    await Promise.all(
      clients.map(async (_c, ci) => {
        // each connection publishes the series it owns (idx % connections === ci), round robin
        const owned = series.map((_s, i) => i).filter((i) => i % clients.length === ci);
        let cursor = 0;
        while (!done() && owned.length) {
          if (inflight[ci]! >= opts.maxInflight) {
            await new Promise<void>((resolve) => {
              waiters[ci] = resolve;
            });
            continue;
          }
          publishOne(owned[cursor]!);
          cursor = (cursor + 1) % owned.length;
          if ((stats.sent & 255) === 0) await new Promise<void>((resolve) => setImmediate(resolve));
        }
      }),
    );
  } else {
    while (!done()) {
      const tick = performance.now();
      for (let i = 0; i < series.length && !done(); i++) publishOne(i);
      const wait = opts.intervalMs - (performance.now() - tick);
      await new Promise<void>((resolve) =>
        setTimeout(resolve, Math.max(0, Math.min(wait, deadline - performance.now()))),
      );
    }
  }

  // Let outstanding acknowledgements arrive (bounded).
  const ackDeadline = performance.now() + 30_000;
  while (stats.acked + stats.errors < stats.sent && performance.now() < ackDeadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  clearInterval(progress);
  process.off('SIGINT', onSigint);
  await Promise.all(clients.map((c) => c.endAsync()));
  const duration = (performance.now() - started) / 1000;
  return {
    sent: stats.sent,
    acked: stats.acked,
    errors: stats.errors,
    bad_sent: stats.bad,
    anomalies: stats.anomalies,
    series: series.length,
    connections: clients.length,
    qos: opts.qos,
    duration_s: Math.round(duration * 1000) / 1000,
    rate_per_s: Math.round(stats.sent / duration),
  };
}
