import { Redis } from 'ioredis';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DaemonProcess, metricValue, spawnDaemon } from '../helpers/daemon.js';
import { eventually, type RestartableService, startRedis, tempDir } from '../helpers/services.js';

// Contract section 16: the newest reading per series in Redis hashes
// cache:latest:{building_id}, through a real MQTT client and a real Redis (its
// own server: the outage case kills it).

const INTERVAL_MS = 300;
let redisServer: RestartableService;
let redis: Redis;
let daemon: DaemonProcess;
let client: mqtt.MqttClient;

beforeAll(async () => {
  redisServer = await startRedis();
  redis = new Redis(redisServer.url, { maxRetriesPerRequest: 1, retryStrategy: () => 100 });
  redis.on('error', () => {});
  daemon = await spawnDaemon({
    DATA_DIR: tempDir('latest-cache'),
    REDIS_URL: redisServer.url,
    EI_REDIS_LATEST_INTERVAL_MS: String(INTERVAL_MS),
  });
  client = await mqtt.connectAsync(`mqtt://127.0.0.1:${daemon.mqttPort}`, { protocolVersion: 4 });
});
afterAll(async () => {
  await client?.endAsync();
  if (daemon && daemon.child.exitCode === null) {
    daemon.child.kill('SIGTERM');
    await daemon.exited;
  }
  redis?.disconnect();
  await redisServer?.stop();
});

const iso = (ms: number) => new Date(ms).toISOString();
const publish = (topic: string, body: unknown) =>
  client.publishAsync(topic, JSON.stringify(body), { qos: 1 });
async function field(building: string, f: string): Promise<Record<string, unknown> | undefined> {
  const v = await redis.hget(`cache:latest:${building}`, f);
  return v === null ? undefined : JSON.parse(v);
}
async function evalCalls(): Promise<number> {
  const info = await redis.info('commandstats');
  let n = 0;
  for (const m of info.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)) n += Number(m[1]);
  return n;
}

describe('latest readings in Redis (cache:latest:{building_id})', () => {
  it('holds the newest reading per floor/room/type as {value, unit, status, timestamp}, with a TTL', async () => {
    const t = Date.now() - 60_000;
    await publish('sensors/building_001/1F/r1/power', { value: 100, timestamp: iso(t) });
    await publish('sensors/building_001/1F/r1/power', [
      { value: 250.5, timestamp: iso(t + 2000), status: 'warning' },
      { value: 180, timestamp: iso(t + 1000) }, // later in the message, older in time
    ]);
    await publish('sensors/building_001/1F/회의실/temperature', { value: 21.5, timestamp: t / 1000 });
    await publish('sensors/2/B1/pump/power', { value: '42', unit: 'kW', timestamp: t + 500 });

    await eventually(
      async () => (await redis.hlen('cache:latest:building_001')) === 2,
      10_000,
      'hash written',
    );
    expect(await field('building_001', '1F/r1/power')).toEqual({
      value: 250.5,
      unit: 'W',
      status: 'warning',
      timestamp: iso(t + 2000),
    });
    expect(await field('building_001', '1F/회의실/temperature')).toEqual({
      value: 21.5,
      unit: 'celsius',
      status: 'normal',
      timestamp: iso(t),
    });
    // the bare id is stored under the canonical key
    await eventually(async () => await field('building_002', 'B1/pump/power'), 10_000, 'building_002');
    expect(await field('building_002', 'B1/pump/power')).toEqual({
      value: 42,
      unit: 'kW',
      status: 'normal',
      timestamp: iso(t + 500),
    });
    const ttl = await redis.ttl('cache:latest:building_001');
    expect(ttl).toBeGreaterThan(86_400 - 60);
    expect(ttl).toBeLessThanOrEqual(86_400);
  });

  it('never replaces a newer stored value with an older reading (this run, another node, an earlier run)', async () => {
    const t = Date.now() - 30_000;
    await publish('sensors/building_003/2F/a/power', { value: 500, timestamp: iso(t) });
    await eventually(async () => (await field('building_003', '2F/a/power'))?.value === 500, 10_000);
    // a late reading, in a later flush: only Redis knows what it holds now
    await publish('sensors/building_003/2F/a/power', { value: 1, timestamp: iso(t - 10_000) });
    // another node (or an earlier run) wrote a newer reading than the one this node will get
    await redis.hset(
      'cache:latest:building_003',
      '2F/b/power',
      JSON.stringify({ value: 900, unit: 'W', status: 'normal', timestamp: iso(t + 20_000) }),
    );
    await publish('sensors/building_003/2F/b/power', { value: 2, timestamp: iso(t + 5000) });
    // a marker in the same building, published last: once it is there, the flushes above have run
    await publish('sensors/building_003/2F/marker/power', { value: 7, timestamp: iso(t) });
    await eventually(async () => (await field('building_003', '2F/marker/power'))?.value === 7, 10_000);
    await new Promise((r) => setTimeout(r, INTERVAL_MS * 3));
    expect((await field('building_003', '2F/a/power'))?.value).toBe(500);
    expect(await field('building_003', '2F/b/power')).toEqual({
      value: 900,
      unit: 'W',
      status: 'normal',
      timestamp: iso(t + 20_000),
    });
    // and a newer one does replace it
    await publish('sensors/building_003/2F/b/power', { value: 3, timestamp: iso(t + 25_000) });
    await eventually(async () => (await field('building_003', '2F/b/power'))?.value === 3, 10_000);
  });

  it('writes a building at most once per redis.latestIntervalMs however fast readings come', async () => {
    const before = await evalCalls();
    const t0 = Date.now();
    const base = Date.now() - 20_000;
    for (let i = 0; i < 40; i++) {
      const batch = Array.from({ length: 50 }, (_, j) => ({
        value: i * 50 + j,
        timestamp: base + i * 50 + j,
      }));
      await publish('sensors/building_004/1F/fast/power', batch);
    }
    await eventually(async () => (await field('building_004', '1F/fast/power'))?.value === 1999, 10_000);
    const elapsed = Date.now() - t0;
    const calls = (await evalCalls()) - before;
    // 2,000 readings; one script call per interval that had something to write (plus the one in progress)
    expect(calls).toBeGreaterThan(0);
    expect(calls).toBeLessThanOrEqual(Math.ceil(elapsed / INTERVAL_MS) + 2);
    expect(calls).toBeLessThan(100);
  });

  it('does not hold up ingestion while Redis is down, and catches up when it is back', async () => {
    await redisServer.crash();
    const t = Date.now() - 10_000;
    const started = Date.now();
    // QoS 1: each publish resolves on its PUBACK, i.e. once the reading is in the durable log
    for (let i = 0; i < 20; i++)
      await publish('sensors/building_005/1F/down/power', { value: i, timestamp: iso(t + i) });
    expect(Date.now() - started).toBeLessThan(10_000);
    await eventually(
      async () => metricValue(await daemon.metrics(), 'energy_ingest_latest_cache_errors_total') > 0,
      10_000,
      'a failed flush counted',
    );
    await redisServer.restart();
    await eventually(
      async () => (await field('building_005', '1F/down/power'))?.value === 19,
      20_000,
      'pending entries written once Redis is back',
    );
    expect(metricValue(await daemon.metrics(), 'energy_ingest_latest_cache_dropped_total')).toBe(0);
  });
});
