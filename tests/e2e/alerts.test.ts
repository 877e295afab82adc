import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import mqtt, { type MqttClient } from 'mqtt';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { AlertEvent } from '../../src/alerts/evaluator.js';
import { migrate } from '../../src/metadata/migrations.js';
import { startApp, type TestApp } from '../helpers/app.js';
import { type DaemonProcess, metricValue, spawnDaemon } from '../helpers/daemon.js';
import {
  eventually,
  freshDatabase,
  type RestartableService,
  startRedis,
  tempDir,
} from '../helpers/services.js';

// Alerts end to end (contract section 11): real MQTT subscribers
// (mosquitto_sub and MQTT.js) and a real Redis see exactly one raised/cleared
// pair per episode, across restarts, Redis outages and rule changes.

const RULES = `
alerts:
  locale: en
  rules:
    - { id: power-warn, sensor_type: power, above: 5000, hysteresis: 500, severity: warning }
    - { id: power-crit, sensorType: power, above: 8000, hysteresis: 500, severity: critical }
    - { id: temp-low, sensor_type: temperature, below: 15, hysteresis: 1 }
    - { id: humid-sustained, sensor_type: humidity, above: 70, for_seconds: 3 }
    - { id: co2-silent, sensor_type: co2, offline_after_seconds: 2, severity: critical }
`;

function configFile(extra = ''): string {
  const path = join(tempDir('alerts-cfg'), 'config.yaml');
  writeFileSync(path, RULES + extra);
  return path;
}

/** mosquitto_sub on alerts/#, each message as "topic|retained|payload" */
function mosquittoSub(port: number, filter = 'alerts/#') {
  const child: ChildProcess = spawn(
    'mosquitto_sub',
    ['-h', '127.0.0.1', '-p', String(port), '-q', '1', '-t', filter, '-F', '%t|%r|%p'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout!.on('data', (b: Buffer) => {
    out += b.toString();
  });
  return {
    lines: () => out.split('\n').filter(Boolean),
    stop: () => child.kill('SIGTERM'),
  };
}

/** An MQTT.js subscriber that keeps what it received: [topic, retain, payload] */
async function subscriber(url: string, filter = 'alerts/#') {
  const client: MqttClient = await mqtt.connectAsync(url, { protocolVersion: 4 });
  const got: Array<{ topic: string; retain: boolean; payload: string }> = [];
  client.on('message', (topic, payload, packet) =>
    got.push({ topic, retain: packet.retain, payload: payload.toString() }),
  );
  await client.subscribeAsync(filter, { qos: 1 });
  return { got, end: () => client.endAsync() };
}

const BASE = Date.now() - 120_000;

async function publishSeries(url: string, topic: string, values: number[], startS: number): Promise<void> {
  const c = await mqtt.connectAsync(url, { protocolVersion: 4 });
  for (const [i, value] of values.entries()) {
    await c.publishAsync(topic, JSON.stringify({ value, timestamp: BASE + (startS + i) * 1000 }), { qos: 1 });
  }
  await c.endAsync();
}

function events(payloads: string[]): string[] {
  return payloads.map((p) => {
    const e = JSON.parse(p) as AlertEvent;
    return `${e.state}:${e.rule_id}@${e.value}`;
  });
}

describe('alerts through a running daemon', () => {
  let t: TestApp;
  let redis: Redis;
  let sub: Redis;
  const published: string[] = [];
  const redisUrl = () => `${inject('redisUrl')}/7`;

  beforeAll(async () => {
    redis = new Redis(redisUrl());
    await redis.flushdb();
    sub = new Redis(redisUrl());
    sub.on('pmessage', (_p, _ch, msg) => published.push(msg));
    await sub.psubscribe('alerts:*');
    t = await startApp({ REDIS_URL: redisUrl() }, configFile());
  });
  afterAll(async () => {
    await t.stop();
    redis.disconnect();
    sub.disconnect();
  });

  it('above with hysteresis and escalation: one pair per episode on MQTT and Redis; late subscribers see the retained state', async () => {
    const mos = mosquittoSub(t.app.mqttPort);
    await new Promise((r) => setTimeout(r, 300));
    const topic = 'sensors/building_001/3F/A/power';
    // 5200 raises the warning, 4600 is inside the hysteresis band, 8500 escalates
    await publishSeries(t.mqttUrl, topic, [4000, 5200, 5100, 4600, 8500], 0);
    await eventually(async () => published.length >= 2, 5000, 'two raised events in Redis');

    // a dashboard that subscribes now gets both active alerts, retained
    const late = await subscriber(t.mqttUrl);
    await eventually(async () => late.got.length >= 2, 5000, 'retained alerts for a late subscriber');
    expect(late.got.every((m) => m.retain)).toBe(true);
    expect(late.got.map((m) => m.topic).sort()).toEqual([
      'alerts/building_001/3F/A/power/power-crit',
      'alerts/building_001/3F/A/power/power-warn',
    ]);
    expect(Object.keys(await redis.hgetall('alerts:active:building_001')).sort()).toEqual([
      '3F/A/power/power-crit',
      '3F/A/power/power-warn',
    ]);
    const active = (await (await fetch(`${t.httpUrl}/api/alerts/active?building_id=1`)).json()) as {
      count: number;
    };
    expect(active.count).toBe(2);
    await late.end();

    // 7600 stays critical (> 8000 − 500), 7400 de-escalates, 4600 keeps the warning, 4500 clears it
    await publishSeries(t.mqttUrl, topic, [7600, 7400, 4600, 4500, 4000], 5);
    await eventually(async () => published.length >= 4, 5000, 'four events in Redis');
    await new Promise((r) => setTimeout(r, 300));
    expect(events(published)).toEqual([
      'raised:power-warn@5200',
      'raised:power-crit@8500',
      'cleared:power-crit@7400',
      'cleared:power-warn@4500',
    ]);
    const parsed = published.map((p) => JSON.parse(p) as AlertEvent);
    expect(parsed[0]!.id).toBe(parsed[3]!.id);
    expect(parsed[1]!.id).toBe(parsed[2]!.id);
    expect(parsed[0]).toMatchObject({
      type: 'energy_alert',
      severity: 'warning',
      building_id: 'building_001',
      threshold: 5000,
      unit: 'W',
      message: 'Power usage exceeded the threshold (now 5200 W, threshold 5000 W)',
      raised_at: new Date(BASE + 1000).toISOString(),
      cleared_at: null,
    });
    expect(parsed[3]!.cleared_at).toBe(new Date(BASE + 8000).toISOString());

    // mosquitto_sub: raised (retained flag off: live), cleared, then the empty retained delete
    await eventually(async () => mos.lines().length >= 6, 5000, 'six MQTT messages');
    mos.stop();
    const lines = mos.lines().map((l) => {
      const [topic, retain, payload] = l.split('|');
      return `${topic!.split('/').pop()} ${retain} ${payload ? (JSON.parse(payload) as AlertEvent).state : '(empty)'}`;
    });
    expect(lines).toEqual([
      'power-warn 0 raised',
      'power-crit 0 raised',
      'power-crit 0 cleared',
      'power-crit 0 (empty)',
      'power-warn 0 cleared',
      'power-warn 0 (empty)',
    ]);

    // nothing retained any more, nothing active in Redis; the stream and the notification carry the history
    const after = await subscriber(t.mqttUrl);
    await new Promise((r) => setTimeout(r, 500));
    expect(after.got).toEqual([]);
    await after.end();
    expect(await redis.hlen('alerts:active:building_001')).toBe(0);
    const stream = await redis.xrange('alerts:stream', '-', '+');
    expect(events(stream.map(([, fields]) => fields[1]!))).toEqual(events(published));
    expect(stream[0]![1][0]).toBe('event');
    expect(JSON.parse((await redis.get('notification:building_001'))!)).toMatchObject({
      state: 'cleared',
      rule_id: 'power-warn',
    });
    const ttl = await redis.ttl('notification:building_001');
    expect(ttl).toBeGreaterThan(86_000);
    expect(ttl).toBeLessThanOrEqual(86_400);
    const metrics = await (await fetch(`${t.httpUrl}/metrics`)).text();
    expect(metricValue(metrics, 'energy_ingest_alerts_total{state="raised",severity="critical"}')).toBe(1);
    expect(metricValue(metrics, 'energy_ingest_alerts_total{state="cleared",severity="warning"}')).toBe(1);
  });

  it('below at the boundary values, and a duration measured on reading timestamps', async () => {
    published.length = 0;
    // 15 is not below 15; 14.9 raises; 15.9 is inside the band; 16 clears (≥ 15 + 1)
    await publishSeries(t.mqttUrl, 'sensors/2/B1/boiler/temperature', [15, 14.9, 14, 15.9, 16], 20);
    // over 70 at t=40–41, a dip at t=42 restarts the clock, over again from t=43: raises at t=46, clears at 69
    await publishSeries(t.mqttUrl, 'sensors/2/B1/boiler/humidity', [75, 90, 60, 80, 80, 80, 85, 69], 40);
    await eventually(async () => published.length >= 4, 5000, 'four events');
    await new Promise((r) => setTimeout(r, 300));
    expect(events(published)).toEqual([
      'raised:temp-low@14.9',
      'cleared:temp-low@16',
      'raised:humid-sustained@85',
      'cleared:humid-sustained@69',
    ]);
    const raised = JSON.parse(published[2]!) as AlertEvent;
    expect(raised.raised_at).toBe(new Date(BASE + 46_000).toISOString());
    expect(raised.building_id).toBe('building_002');
  });

  it('a sensor that goes silent raises sensor_offline once, and its next reading clears it', async () => {
    published.length = 0;
    await publishSeries(t.mqttUrl, 'sensors/building_001/1F/lobby/co2', [450], 60);
    const raised = await eventually(
      async () => published.map((p) => JSON.parse(p) as AlertEvent).find((e) => e.type === 'sensor_offline'),
      8000,
      'sensor_offline raised',
    );
    expect(raised).toMatchObject({
      state: 'raised',
      rule_id: 'co2-silent',
      threshold: 2,
      unit: 's',
      severity: 'critical',
    });
    await new Promise((r) => setTimeout(r, 2500));
    expect(published).toHaveLength(1);
    await publishSeries(t.mqttUrl, 'sensors/building_001/1F/lobby/co2', [460], 61);
    await eventually(async () => published.length >= 2, 5000, 'sensor_offline cleared');
    expect(JSON.parse(published[1]!)).toMatchObject({
      state: 'cleared',
      id: raised.id,
      type: 'sensor_offline',
    });
  });
});

describe('alert state across restarts, outages and a frozen Redis', () => {
  const daemons: DaemonProcess[] = [];
  let redisServer: RestartableService;
  let redis: Redis;
  afterAll(async () => {
    for (const d of daemons) if (d.child.exitCode === null) d.child.kill('SIGKILL');
    redisServer?.resume();
    redis?.disconnect();
    await redisServer?.stop();
  });
  beforeAll(async () => {
    redisServer = await startRedis();
    redis = new Redis(redisServer.url, { maxRetriesPerRequest: 1, retryStrategy: () => 100 });
    redis.on('error', () => {});
  });

  async function daemon(
    dataDir: string,
    cfg: string,
    env: Record<string, string> = {},
  ): Promise<DaemonProcess> {
    const d = await spawnDaemon({
      DATA_DIR: dataDir,
      REDIS_URL: redisServer.url,
      ENERGY_INGEST_CONFIG: cfg,
      ...env,
    });
    daemons.push(d);
    return d;
  }
  const streamEvents = async () =>
    events((await redis.xrange('alerts:stream', '-', '+')).map(([, f]) => f[1]!));

  it('kill -9 with an active alert: after the restart it is retained again and never raised twice', async () => {
    const dataDir = tempDir('alerts-restart');
    const cfg = configFile();
    // readings stay unwritten until the kill, so the restart replays them from the durable log
    const first = await daemon(dataDir, cfg, { EI_PIPELINE_FLUSH_INTERVAL_MS: '60000' });
    const url = `mqtt://127.0.0.1:${first.mqttPort}`;
    await publishSeries(url, 'sensors/3/2F/hall/power', [9000], 0);
    await eventually(async () => (await streamEvents()).length === 2, 5000, 'raised in Redis');
    first.child.kill('SIGKILL');
    await first.exited;

    const second = await daemon(dataDir, cfg, { LOG_LEVEL: 'info' });
    const url2 = `mqtt://127.0.0.1:${second.mqttPort}`;
    // the replay wrote the reading that raised the alerts again, and raised nothing
    expect(second.output()).toContain('replaying the durable log');
    await eventually(
      async () => ((await second.status()).points_written ?? 0) >= 1,
      5000,
      'replayed reading written',
    );
    const late = await subscriber(url2);
    await eventually(async () => late.got.length === 2, 5000, 'retained alerts after restart');
    const ids = late.got.map((m) => (JSON.parse(m.payload) as AlertEvent).id).sort();
    const streamIds = (await redis.xrange('alerts:stream', '-', '+'))
      .map(([, f]) => (JSON.parse(f[1]!) as AlertEvent).id)
      .sort();
    expect(ids).toEqual(streamIds);
    // still over both thresholds: nothing new; then back to normal: both cleared with their ids
    await publishSeries(url2, 'sensors/3/2F/hall/power', [9500, 1000], 1);
    await eventually(async () => (await streamEvents()).length === 4, 5000, 'cleared in Redis');
    expect(await streamEvents()).toEqual([
      'raised:power-crit@9000',
      'raised:power-warn@9000',
      'cleared:power-crit@1000',
      'cleared:power-warn@1000',
    ]);
    const stream = (await redis.xrange('alerts:stream', '-', '+')).map(
      ([, f]) => JSON.parse(f[1]!) as AlertEvent,
    );
    expect(stream[2]!.id).toBe(stream[0]!.id);
    await late.end();
    second.child.kill('SIGTERM');
    expect((await second.exited).code).toBe(0);
  });

  it('Redis down: ingestion and MQTT alerts go on, Redis gets the events and the right active hash when it is back', async () => {
    await redis.flushdb();
    const d = await daemon(tempDir('alerts-outage'), configFile());
    const url = `mqtt://127.0.0.1:${d.mqttPort}`;
    const mqttSeen = await subscriber(url);
    await redisServer.crash();
    const t0 = Date.now();
    // raise and clear one episode and raise another while Redis is down
    await publishSeries(url, 'sensors/4/1F/a/power', [6000, 1000, 9000], 0);
    expect(Date.now() - t0).toBeLessThan(3000);
    await eventually(async () => mqttSeen.got.length >= 5, 5000, 'MQTT alerts during the Redis outage');
    await redisServer.restart();
    await eventually(
      async () => (await streamEvents().catch(() => [])).length === 4,
      15_000,
      'events delivered after recovery',
    );
    expect(await streamEvents()).toEqual([
      'raised:power-warn@6000',
      'cleared:power-warn@1000',
      'raised:power-crit@9000',
      'raised:power-warn@9000',
    ]);
    expect(Object.keys(await redis.hgetall('alerts:active:building_004')).sort()).toEqual([
      '1F/a/power/power-crit',
      '1F/a/power/power-warn',
    ]);
    expect(
      metricValue(await d.metrics(), 'energy_ingest_alert_delivery_retries_total{output="redis"}'),
    ).toBeGreaterThan(0);
    await mqttSeen.end();
    d.child.kill('SIGTERM');
    await d.exited;
  });

  it('a fresh data directory takes the active alerts from alerts:active:* (same id, retained again)', async () => {
    const cfg = configFile();
    const first = await daemon(tempDir('alerts-a'), cfg);
    await publishSeries(`mqtt://127.0.0.1:${first.mqttPort}`, 'sensors/6/1F/x/power', [6000], 0);
    await eventually(
      async () => (await redis.hlen('alerts:active:building_006')) === 1,
      5000,
      'active in Redis',
    );
    const [raised] = Object.values(await redis.hgetall('alerts:active:building_006')).map(
      (v) => JSON.parse(v) as AlertEvent,
    );
    first.child.kill('SIGKILL');
    await first.exited;

    // a new container without the volume
    const dataDir = tempDir('alerts-b');
    const second = await daemon(dataDir, cfg);
    // (building 6 only: a fresh instance takes over every active alert in Redis, earlier tests' too)
    const lateOnSecond = await subscriber(`mqtt://127.0.0.1:${second.mqttPort}`, 'alerts/building_006/#');
    await eventually(async () => lateOnSecond.got.length === 1, 5000, 'retained alert from Redis state');
    expect(JSON.parse(lateOnSecond.got[0]!.payload)).toMatchObject({ id: raised!.id, state: 'raised' });
    await lateOnSecond.end();
    // killed again: its own journal now carries the alert it took from Redis
    second.child.kill('SIGKILL');
    await second.exited;
    await redis.del('alerts:active:building_006');
    const third = await daemon(dataDir, cfg);
    const url = `mqtt://127.0.0.1:${third.mqttPort}`;
    const late = await subscriber(url, 'alerts/building_006/#');
    await eventually(async () => late.got.length === 1, 5000, 'retained alert from the journal');
    expect(JSON.parse(late.got[0]!.payload)).toMatchObject({ id: raised!.id, state: 'raised' });
    const streamBefore = await redis.xlen('alerts:stream');
    await publishSeries(url, 'sensors/6/1F/x/power', [6500, 100], 1);
    await eventually(
      async () => (await redis.xlen('alerts:stream')) === streamBefore + 1,
      5000,
      'one cleared event',
    );
    const [[, fields]] = (await redis.xrevrange('alerts:stream', '+', '-', 'COUNT', 1)) as [
      [string, string[]],
    ];
    expect(JSON.parse(fields[1]!)).toMatchObject({ id: raised!.id, state: 'cleared' });
    await late.end();
    third.child.kill('SIGTERM');
    await third.exited;
  });

  it('a frozen Redis (SIGSTOP) does not slow ingestion; events arrive once it thaws', async () => {
    const d = await daemon(tempDir('alerts-frozen'), configFile());
    const url = `mqtt://127.0.0.1:${d.mqttPort}`;
    // 2,000 QoS 1 readings (50 in flight), one crossing in ten; timed with Redis up, then frozen
    const send = async (offset: number) => {
      const t0 = Date.now();
      const c = await mqtt.connectAsync(url, { protocolVersion: 4 });
      for (let i = 0; i < 2000; i += 50) {
        await Promise.all(
          Array.from({ length: 50 }, (_, j) => {
            const n = i + j;
            const value = n % 10 === 0 ? (n % 20 === 0 ? 9000 : 100) : 4000;
            return c.publishAsync(
              'sensors/9/1F/f/power',
              JSON.stringify({ value, timestamp: BASE + offset + n }),
              {
                qos: 1,
              },
            );
          }),
        );
      }
      await c.endAsync();
      return Date.now() - t0;
    };
    const warm = await send(200_000);
    await eventually(
      async () => (await redis.hlen('alerts:active:building_009')) === 0,
      5000,
      'warm-up delivered',
    );
    const before = await redis.xlen('alerts:stream');
    redisServer.pause();
    try {
      const frozen = await send(210_000);
      // the same work with Redis frozen takes about as long (loose bound: this suite runs in parallel)
      expect(frozen).toBeLessThan(warm * 3 + 2000);
      const status = await d.status();
      expect(status.readings_accepted).toBe(4000);
    } finally {
      redisServer.resume();
    }
    // 200 crossings: 100 episodes of power-warn and power-crit each raised and cleared
    await eventually(
      async () => (await redis.xlen('alerts:stream')) === before + 400,
      20_000,
      'all events delivered after the thaw',
    );
    expect(await redis.hlen('alerts:active:building_009')).toBe(0);
    d.child.kill('SIGTERM');
    await d.exited;
  });
});

describe('rules from the alert_rules table', () => {
  let t: TestApp;
  let db: pg.Client;
  beforeAll(async () => {
    const url = await freshDatabase(inject('postgresUrl'), 'alerts_e2e');
    await migrate(url);
    db = new pg.Client({ connectionString: url });
    await db.connect();
    await db.query(`INSERT INTO buildings (id, name, address) VALUES (5, 'E', 'Seoul')`);
    // the row wins over the config rule power-warn (5000)
    await db.query(
      `INSERT INTO alert_rules (id, sensor_type, above, severity, message) VALUES ('power-warn', 'power', 100, 'minor', '{room}: {value}{unit} > {threshold}')`,
    );
    t = await startApp({ DATABASE_URL: url, EI_ALERTS_LOCALE: 'ko' }, configFile());
  });
  afterAll(async () => {
    await t.stop();
    await db.end();
  });

  it('a table row overrides the config rule, and a new row applies without a restart', async () => {
    const seen = await subscriber(t.mqttUrl);
    await publishSeries(t.mqttUrl, 'sensors/5/1F/r1/power', [150], 0);
    await eventually(async () => seen.got.length >= 1, 5000, 'raised by the table rule');
    expect(JSON.parse(seen.got[0]!.payload)).toMatchObject({
      rule_id: 'power-warn',
      severity: 'minor',
      threshold: 100,
      message: 'r1: 150W > 100',
    });

    await db.query(
      `INSERT INTO alert_rules (id, sensor_type, below, room) VALUES ('cold-r2', 'temperature', 10, 'r2')`,
    );
    await eventually(
      async () => {
        await publishSeries(
          t.mqttUrl,
          'sensors/5/1F/r2/temperature',
          [5],
          Math.round((Date.now() - BASE) / 1000) - 100,
        );
        return seen.got.some((m) => m.topic.endsWith('/cold-r2'));
      },
      5000,
      'the new rule applied',
    );
    const cold = seen.got.find((m) => m.topic.endsWith('/cold-r2'))!;
    expect(JSON.parse(cold.payload)).toMatchObject({
      severity: 'warning',
      message: '온도가 임계치 미만으로 떨어졌습니다 (현재 5 celsius, 임계치 10 celsius)',
    });

    // deleting the row clears its active alert rather than leaving it retained forever
    await db.query(`DELETE FROM alert_rules WHERE id = 'cold-r2'`);
    await eventually(
      async () => seen.got.some((m) => m.topic.endsWith('/cold-r2') && m.payload === ''),
      5000,
      'cleared on rule removal',
    );
    await seen.end();
  });
});
