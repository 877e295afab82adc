import type { Aedes } from 'aedes';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { hashPassword } from '../../src/broker/credentials.js';
import { migrate } from '../../src/metadata/migrations.js';
import { upsertDevice } from '../../src/metadata/postgresStore.js';
import { startApp, type TestApp } from '../helpers/app.js';
import { eventually, freshDatabase, type RestartableService, startRedis } from '../helpers/services.js';

// Issue 18, items 2 and 3: rights changes reach live connections, and a
// Redis-session login ends with its session. Real PostgreSQL, real Redis, MQTT.js.

// werkzeug pbkdf2 hash of 'hunter2' (tests/unit/auth.test.ts)
const HUNTER2 =
  'pbkdf2:sha256:1000$saltysalt$e2276b360243720a6364e76e1e6147f056c0417039b9ac5d0c4f218f46ccb9ec';

interface Live {
  c: MqttClient;
  messages: string[];
  closed: Promise<void>;
  isClosed: () => boolean;
}

function aedesOf(t: TestApp): Aedes {
  // the broker part's Broker (src/broker/part.ts)
  return (t.app as unknown as { broker: { broker: { aedesInstance: Aedes } } }).broker.broker.aedesInstance;
}

/** the filters the broker holds for a connected client id */
function serverSubscriptions(t: TestApp, clientId: string): string[] {
  const c = (aedesOf(t) as unknown as { clients: Record<string, { subscriptions: object }> }).clients[
    clientId
  ];
  return c ? Object.keys(c.subscriptions) : [];
}

const opened: MqttClient[] = [];

function refusals(t: TestApp): string {
  // what was refused, for a failure's message
  const values = (t.app.metrics.authRefused as unknown as { values: Map<string, unknown> }).values;
  return JSON.stringify([...values.values()]);
}

async function connect(t: TestApp, username: string, password: string, extra: IClientOptions = {}) {
  const c = await mqtt.connectAsync(t.mqttUrl, {
    protocolVersion: 4,
    username,
    password,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    ...extra,
  });
  opened.push(c);
  let isClosed = false;
  const closed = new Promise<void>((resolve) =>
    c.once('close', () => {
      isClosed = true;
      resolve();
    }),
  );
  const live: Live = { c, messages: [], closed, isClosed: () => isClosed };
  c.on('message', (topic) => live.messages.push(topic));
  return live;
}

/** QoS 1 publish: 'acked' on PUBACK, 'closed' when the broker cut the connection instead */
async function publish(l: Live, topic: string, payload = '21.5'): Promise<'acked' | 'closed'> {
  return Promise.race([
    l.c.publishAsync(topic, payload, { qos: 1 }).then(
      () => 'acked' as const,
      () => 'closed' as const,
    ),
    l.closed.then(() => 'closed' as const),
  ]);
}

/** the SUBACK return codes (MQTT.js rejects a SUBACK holding 0x80: its packet is read instead) */
async function granted(l: Live, filters: string | string[], qos: 0 | 1 = 0): Promise<number[]> {
  try {
    return (await l.c.subscribeAsync(filters, { qos })).map((g) => g.qos);
  } catch (err) {
    const packet = (err as { packet?: { granted?: number[] } }).packet;
    if (!packet?.granted) throw err;
    return packet.granted;
  }
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([
    p,
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`${what} not within ${ms} ms`)), ms).unref(),
    ),
  ]);
}

function session(username: string, role: string, expiresAt: string): string {
  return JSON.stringify({
    user_id: 7,
    username,
    role,
    login_time: new Date().toISOString(),
    expires_at: expiresAt,
  });
}

afterAll(async () => {
  await Promise.all(opened.map((c) => c.endAsync(true).catch(() => {})));
});

describe('rights changes reach connected clients (issue 18.2)', () => {
  let url: string;
  let db: pg.Client;
  let t: TestApp;
  let redis: import('ioredis').Redis;

  beforeAll(async () => {
    url = await freshDatabase(inject('postgresUrl'), 'live_rights_e2e');
    await migrate(url);
    db = new pg.Client({ connectionString: url });
    await db.connect();
    await db.query(`INSERT INTO buildings (id, name, address) VALUES (1, 'A', 'a'), (2, 'B', 'b')`);
    const pool = new pg.Pool({ connectionString: url, max: 1 });
    for (const [username, role, buildingId] of [
      ['mover', 'sensor', 1],
      ['feeder', 'sensor', null],
      ['ops', 'admin', null],
      ['ops-away', 'admin', null],
    ] as const) {
      await upsertDevice(pool, {
        username,
        passwordHash: await hashPassword(`${username}-pass`, 16384),
        role,
        buildingId,
      });
    }
    await pool.end();
    await db.query(
      `INSERT INTO users (username, email, password_hash, role) VALUES
         ('boss', 'boss@energy.com', $1, 'admin'), ('chief', 'chief@energy.com', $1, 'admin')`,
      [HUNTER2],
    );
    const { Redis } = await import('ioredis');
    redis = new Redis(inject('redisUrl'));
    t = await startApp({
      DATABASE_URL: url,
      REDIS_URL: inject('redisUrl'),
      EI_AUTH_REDIS_SESSIONS: 'true',
      ALLOW_ANONYMOUS: 'false',
      EI_AUTH_RECHECK_INTERVAL_SECONDS: '2',
      EI_MQTT_CONNECT_RATE_PER_IP: '100000',
      EI_AUTH_FAILED_LOGIN_BURST: '1000',
    });
  }, 60_000);

  afterAll(async () => {
    await t?.stop();
    await db?.end();
    redis?.disconnect();
  });

  it('a device moved from building 1 to 2 publishes for building 2, not 1, on its open connection', async () => {
    const l = await connect(t, 'mover', 'mover-pass');
    expect(await publish(l, 'sensors/building_001/1/101/temperature')).toBe('acked');
    await db.query(`UPDATE mqtt_devices SET building_id = 2 WHERE username = 'mover'`);
    await eventually(
      async () => t.app.snapshot.devices.find((d) => d.username === 'mover')?.building_id === 2,
      15_000,
      'the NOTIFY-driven reload',
    );
    // the new building at once, on the connection made before the change
    expect(await publish(l, 'sensors/building_002/1/101/temperature')).toBe('acked');
    const denied = t.app.metrics.authRefused.get({ reason: 'publish_denied' });
    // and the old one no more: MQTT 3.1.1 has no negative PUBACK, the broker closes the connection
    expect(await within(publish(l, 'sensors/building_001/1/101/temperature'), 10_000, 'refusal')).toBe(
      'closed',
    );
    expect(t.app.metrics.authRefused.get({ reason: 'publish_denied' })).toBe(denied + 1);
  });

  it('a device demoted from admin loses its $SYS/# subscription, live and in its stored session', async () => {
    const clientId = 'ops-console';
    const l = await connect(t, 'ops', 'ops-pass', { clientId, clean: false });
    expect(await granted(l, ['$SYS/#', 'sensors/#'], 1), refusals(t)).toEqual([1, 1]);
    // another client connecting makes Aedes publish $SYS/{id}/new/clients
    const probe = await connect(t, 'feeder', 'feeder-pass');
    await eventually(async () => l.messages.some((m) => m.startsWith('$SYS/')), 10_000, 'a $SYS message');
    await probe.c.endAsync();

    await db.query(`UPDATE mqtt_devices SET role = 'dashboard' WHERE username = 'ops'`);
    await eventually(
      async () => t.app.snapshot.devices.find((d) => d.username === 'ops')?.role === 'dashboard',
      15_000,
      'the NOTIFY-driven reload',
    );
    await eventually(
      async () => !serverSubscriptions(t, clientId).includes('$SYS/#'),
      5000,
      'the $SYS/# subscription removed',
    );
    expect(serverSubscriptions(t, clientId)).toContain('sensors/#');
    expect(l.isClosed()).toBe(false);
    // still connected as a dashboard: readings arrive, $SYS messages do not
    l.messages.length = 0;
    const feeder = await connect(t, 'feeder', 'feeder-pass');
    expect(await publish(feeder, 'sensors/building_002/3/301/power', '120')).toBe('acked');
    await eventually(
      async () => l.messages.includes('sensors/building_002/3/301/power'),
      10_000,
      'a reading',
    );
    expect(l.messages.filter((m) => m.startsWith('$SYS/'))).toEqual([]);
    // and it cannot take it back
    expect((await granted(l, '$SYS/#'))[0]).toBe(128);
    await feeder.c.endAsync();
    // the persistent session resumed later does not bring $SYS/# back either
    await l.c.endAsync();
    const again = await connect(t, 'ops', 'ops-pass', { clientId, clean: false });
    await eventually(async () => serverSubscriptions(t, clientId).includes('sensors/#'), 5000, 'restore');
    expect(serverSubscriptions(t, clientId)).not.toContain('$SYS/#');
    await again.c.endAsync();
  });

  // a regression guard: Aedes 1.2 authorizes restored subscriptions again, so this held before issue 18 too
  it('an admin demoted while its persistent session is offline does not get $SYS/# back on resume', async () => {
    const clientId = 'ops-away-console';
    const l = await connect(t, 'ops-away', 'ops-away-pass', { clientId, clean: false });
    expect(await granted(l, ['$SYS/#', 'alerts/#'], 1)).toEqual([1, 1]);
    await l.c.endAsync();
    await db.query(`UPDATE mqtt_devices SET role = 'dashboard' WHERE username = 'ops-away'`);
    await eventually(
      async () => t.app.snapshot.devices.find((d) => d.username === 'ops-away')?.role === 'dashboard',
      15_000,
      'the NOTIFY-driven reload',
    );
    const back = await connect(t, 'ops-away', 'ops-away-pass', { clientId, clean: false });
    expect(back.c.connected).toBe(true);
    await eventually(async () => serverSubscriptions(t, clientId).includes('alerts/#'), 5000, 'restore');
    await eventually(
      async () => !serverSubscriptions(t, clientId).includes('$SYS/#'),
      5000,
      'the restored $SYS/# removed',
    );
    await back.c.endAsync();
  });

  it('a users admin demoted or deleted loses its rights within the re-check interval (no NOTIFY on users)', async () => {
    const boss = await connect(t, 'boss', 'hunter2', { clientId: 'boss-1' });
    const chief = await connect(t, 'chief', 'hunter2', { clientId: 'chief-1' });
    expect((await granted(boss, '$SYS/#'))[0]).toBe(0);
    expect((await granted(chief, '$SYS/#'))[0]).toBe(0);
    await db.query(`UPDATE users SET role = 'user' WHERE username = 'boss'`);
    await db.query(`DELETE FROM users WHERE username = 'chief'`);
    // auth.recheckIntervalSeconds is 2 here
    await within(chief.closed, 15_000, 'the deleted admin disconnected');
    await eventually(
      async () => !serverSubscriptions(t, 'boss-1').includes('$SYS/#'),
      15_000,
      'the demoted admin losing $SYS/#',
    );
    expect(boss.isClosed()).toBe(false);
    expect((await granted(boss, '$SYS/#'))[0]).toBe(128);
    expect((await granted(boss, 'alerts/#'))[0]).toBe(0);
    expect(t.app.metrics.liveRightsDisconnected.get({ reason: 'user_removed' })).toBeGreaterThanOrEqual(1);
  });

  it('a session login is disconnected once its session key is deleted (logout)', async () => {
    await redis.set(
      'session:logout_1',
      session('kim', 'admin', new Date(Date.now() + 3_600_000).toISOString()),
    );
    const l = await connect(t, 'session', 'logout_1', { clientId: 'kim-1' });
    expect((await granted(l, '$SYS/#'))[0]).toBe(0);
    await redis.del('session:logout_1');
    // re-checked every 2 s here
    await within(l.closed, 15_000, 'disconnect after logout');
    expect(t.app.metrics.liveRightsDisconnected.get({ reason: 'session_gone' })).toBeGreaterThanOrEqual(1);
  });
});

describe('session expiry and Redis outages (issue 18.3)', () => {
  it('a session login ends at expires_at (a time without zone is UTC); an extended session goes on', async () => {
    const { Redis } = await import('ioredis');
    const redis = new Redis(inject('redisUrl'));
    // the periodic re-check is an hour away: only the timer at expires_at can end these
    const t = await startApp({
      REDIS_URL: inject('redisUrl'),
      EI_AUTH_REDIS_SESSIONS: 'true',
      ALLOW_ANONYMOUS: 'false',
      EI_AUTH_RECHECK_INTERVAL_SECONDS: '3600',
    });
    try {
      // Python's naive datetime.utcnow().isoformat(): no zone, read as UTC
      const soon = new Date(Date.now() + 3000).toISOString().replace('Z', '');
      await redis.set('session:exp_short', session('lee', 'user', soon));
      await redis.set('session:exp_slide', session('park', 'user', soon));
      const short = await connect(t, 'session', 'exp_short', { clientId: 'lee-1' });
      const slide = await connect(t, 'session', 'exp_slide', { clientId: 'park-1' });
      // the system extends one session before it expires (sliding expiry)
      await redis.set(
        'session:exp_slide',
        session('park', 'user', new Date(Date.now() + 3_600_000).toISOString()),
      );
      await within(short.closed, 15_000, 'disconnect at expires_at');
      // both timers fired at the same moment: the extended one was read again and kept
      await new Promise((r) => setTimeout(r, 1000));
      expect(slide.isClosed()).toBe(false);
      expect(t.app.metrics.liveRightsDisconnected.get({ reason: 'session_expired' })).toBe(1);
      await slide.c.endAsync();
    } finally {
      await t.stop();
      redis.disconnect();
    }
  });

  it('Redis down: session logins stay until their expires_at, then go', async () => {
    let own: RestartableService | undefined;
    let t: TestApp | undefined;
    try {
      own = await startRedis();
      const { Redis } = await import('ioredis');
      const redis = new Redis(own.url);
      const expiresAt = Date.now() + 12_000;
      await redis.set('session:outage_1', session('choi', 'user', new Date(expiresAt).toISOString()));
      redis.disconnect();
      t = await startApp({
        REDIS_URL: own.url,
        EI_AUTH_REDIS_SESSIONS: 'true',
        ALLOW_ANONYMOUS: 'false',
        EI_AUTH_RECHECK_INTERVAL_SECONDS: '1',
      });
      const app = t;
      const l = await connect(t, 'session', 'outage_1', { clientId: 'choi-1' });
      await own.crash();
      // the re-checks fail ...
      await eventually(
        async () => app.app.metrics.liveRightsChecksFailed.get({ store: 'redis' }) >= 2,
        10_000,
        'failed re-checks',
      );
      // ... and the client is kept meanwhile (not everyone cut off because Redis is away)
      if (Date.now() < expiresAt - 500) expect(l.isClosed()).toBe(false);
      // but not past the expires_at Redis last told
      await within(l.closed, 25_000, 'disconnect at expires_at while Redis is down');
      expect(Date.now()).toBeGreaterThanOrEqual(expiresAt - 100);
      expect(app.app.metrics.liveRightsDisconnected.get({ reason: 'session_expired' })).toBe(1);
    } finally {
      await t?.stop();
      await own?.stop();
    }
  });
});
