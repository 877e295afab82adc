import type { ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { backtest, backtestDays, predict } from '../src/forecast/model.js';
import type { Reading } from '../src/ingest/reading.js';
import { RedisLatestCache } from '../src/latest/redisLatest.js';
import { energyPattern } from '../tests/helpers/energyPattern.js';
import { type ProcSample, sample } from './procStats.js';

// Issue 17: what the latest-readings cache in Redis costs (contract section
// 16), and how the forecast model does on generated roll-ups (section 17).

export interface CacheRun {
  readings: number;
  readingsPerS: number;
  cpuS: number;
  cpuUsPerReading: number;
  peakRssMb: number;
  redisCommandsPerS: number;
  redisEvalPerS: number;
  redisCpuS: number;
  hashFields: number;
}

interface Daemon {
  child: ChildProcess;
  mqtt: string;
  status(): Promise<{ readings_accepted: number }>;
}

async function redisStats(redis: Redis): Promise<{ commands: number; evals: number; cpu: number }> {
  const stats = await redis.info('stats');
  const cmd = await redis.info('commandstats');
  const cpu = await redis.info('cpu');
  let evals = 0;
  for (const m of cmd.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)) evals += Number(m[1]);
  const num = (text: string, key: string) =>
    Number(new RegExp(`^${key}:([\\d.]+)`, 'm').exec(text)?.[1] ?? 0);
  return {
    commands: num(stats, 'total_commands_processed'),
    evals,
    cpu: num(cpu, 'used_cpu_user') + num(cpu, 'used_cpu_sys'),
  };
}

/**
 * One daemon under ~50,000 readings/s for `seconds` (10×10×25 rooms × 4 types
 * = 10,000 series, a reading each every 200 ms), Redis configured; the cache
 * on or off. CPU of the daemon per accepted reading; Redis commands per second
 * (its own counters, so the cache's EVALSHA and the commands its script runs).
 */
export async function latestCacheRun(
  redisUrl: string,
  cacheOn: boolean,
  seconds: number,
  start: (env: Record<string, string>) => Promise<Daemon & { stop(): Promise<void> }>,
  simulate: (url: string, args: string[]) => Promise<Record<string, number>>,
): Promise<CacheRun> {
  const redis = new Redis(redisUrl);
  try {
    await redis.flushall();
    const d = await start({ REDIS_URL: redisUrl, EI_REDIS_LATEST_CACHE: String(cacheOn) });
    const st0 = await d.status();
    const cpu0 = sample(d.child.pid!);
    const r0 = await redisStats(redis);
    const t0 = performance.now();
    const sim = await simulate(d.mqtt, [
      '--buildings',
      '10',
      '--floors',
      '10',
      '--rooms',
      '25',
      '--interval-ms',
      '200',
      '--duration-s',
      String(seconds),
      '--connections',
      '4',
      '--max-inflight',
      '2000',
    ]);
    await new Promise((r) => setTimeout(r, 1500)); // the last coalesced write
    const secs = (performance.now() - t0) / 1000;
    console.error(`simulator: ${JSON.stringify(sim)}; ${secs.toFixed(1)} s from its start to the last write`);
    const st1 = await d.status();
    const s: ProcSample = sample(d.child.pid!);
    const r1 = await redisStats(redis);
    let hashFields = 0;
    for (const key of await redis.keys('cache:latest:*')) hashFields += await redis.hlen(key);
    await d.stop();
    const readings = st1.readings_accepted - st0.readings_accepted;
    const cpuS = s.cpuSeconds - cpu0.cpuSeconds;
    return {
      readings,
      readingsPerS: Math.round(readings / Math.min(secs, sim.duration_s ?? secs)),
      cpuS: Math.round(cpuS * 10) / 10,
      cpuUsPerReading: Math.round((cpuS / Math.max(1, readings)) * 1e6 * 100) / 100,
      peakRssMb: Math.round(s.peakRssBytes / 1024 / 1024),
      // INFO itself and the few reads above are in the difference: a handful, not per reading
      redisCommandsPerS: Math.round((r1.commands - r0.commands) / secs),
      redisEvalPerS: Math.round(((r1.evals - r0.evals) / secs) * 10) / 10,
      redisCpuS: Math.round((r1.cpu - r0.cpu) * 100) / 100,
      hashFields,
    };
  } finally {
    redis.disconnect();
  }
}

/** The model and its baseline on generated roll-ups (daily + weekly cycles, noise): 1,000 buildings, 4 weeks each. */
export function forecastAccuracy(buildings = 1000): {
  mape: number;
  baselineMape: number;
  coverage: number;
  hours: number;
  ms: number;
} {
  const start = Math.floor(Date.UTC(2026, 9, 5) / 3_600_000);
  const data = Array.from({ length: buildings }, (_, b) => energyPattern(b + 1, start, 28 * 24));
  let mape = 0;
  let baselineMape = 0;
  let coverage = 0;
  let hours = 0;
  const t0 = performance.now();
  for (const values of data) {
    const s = { startHour: start, values };
    predict(s, values.length, 24);
    const bt = backtest(s, backtestDays(values.length, 7));
    mape += bt.mape;
    baselineMape += bt.baselineMape;
    coverage += bt.coverage;
    hours += bt.hours;
  }
  const ms = performance.now() - t0;
  const r2 = (n: number) => Math.round(n * 100) / 100;
  return {
    mape: r2(mape / buildings),
    baselineMape: r2(baselineMape / buildings),
    coverage: r2(coverage / buildings),
    hours,
    ms: Math.round(ms),
  };
}

/**
 * The cache's own cost, in process, against a real Redis: 10,000 series in 10
 * buildings, 50,000 readings per simulated second (5 per series) recorded,
 * then one flush, as the daemon's 1 s timer would do; CPU time of this
 * process (process.cpuUsage: the client's encoding and parsing included)
 * against the same loop with no cache. Load on the machine slows it down but
 * is not counted in this process's CPU time.
 */
export async function latestCacheMicro(
  redisUrl: string,
  seconds = 20,
): Promise<{ nsPerReading: number; flushCpuMs: number; commandsPerFlush: number; evalsPerFlush: number }> {
  const redis = new Redis(redisUrl);
  try {
    await redis.flushall();
    const series: Reading[] = [];
    for (let b = 1; b <= 10; b++)
      for (let k = 0; k < 1000; k++)
        series.push({
          buildingId: b,
          building: `building_${String(b).padStart(3, '0')}`,
          floor: `${Math.floor(k / 100) + 1}F`,
          room: `room_${k % 100}`,
          sensorType: 'power',
          value: k,
          unit: 'W',
          status: 'normal',
          extra: [],
          timestampMs: 0,
        });
    const t0 = Date.now() - 3_600_000;
    // the readings of one second, made up front so that neither loop counts their making
    const second = (s: number) => {
      const out: Reading[][] = [];
      for (let rep = 0; rep < 5; rep++)
        for (let i = 0; i < series.length; i += 100)
          out.push(
            series
              .slice(i, i + 100)
              .map((r) => ({ ...r, value: r.value + rep, timestampMs: t0 + s * 1000 + rep * 200 })),
          );
      return out;
    };
    const cache = new RedisLatestCache({
      redis,
      intervalMs: 1000,
      maxPending: 100_000,
      onDrop: () => {},
      onError: (e) => {
        throw e;
      },
    });
    const sink: { n: number } = { n: 0 };
    const noCache = (msgs: Reading[][]) => {
      for (const m of msgs) sink.n += m.length;
    };
    let cacheCpu = 0;
    let baseCpu = 0;
    let flushCpu = 0;
    const before = await redisStats(redis);
    for (let s = 0; s < seconds; s++) {
      const msgs = second(s);
      let c0 = process.cpuUsage();
      noCache(msgs);
      let c1 = process.cpuUsage(c0);
      baseCpu += c1.user + c1.system;
      c0 = process.cpuUsage();
      for (const m of msgs) cache.record(m);
      c1 = process.cpuUsage(c0);
      cacheCpu += c1.user + c1.system;
      c0 = process.cpuUsage();
      await cache.flush();
      c1 = process.cpuUsage(c0);
      flushCpu += c1.user + c1.system;
    }
    const after = await redisStats(redis);
    const readings = seconds * 50_000;
    return {
      nsPerReading: Math.round(((cacheCpu + flushCpu - baseCpu) * 1000) / readings),
      flushCpuMs: Math.round(flushCpu / seconds / 100) / 10,
      commandsPerFlush: Math.round((after.commands - before.commands - 3) / seconds),
      evalsPerFlush: Math.round((after.evals - before.evals) / seconds),
    };
  } finally {
    redis.disconnect();
  }
}
