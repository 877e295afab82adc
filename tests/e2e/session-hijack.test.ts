import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { IConnackPacket, IPublishPacket } from 'mqtt-packet';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { hashPassword } from '../../src/broker/credentials.js';
import { migrate } from '../../src/metadata/migrations.js';
import { upsertDevice } from '../../src/metadata/postgresStore.js';
import { startApp, type TestApp } from '../helpers/app.js';
import { connectPacket, rawSession } from '../helpers/rawMqtt.js';
import { eventually, freshDatabase } from '../helpers/services.js';

// Issue 12, item 2: a client id belongs to the login that created its session.
// Real PostgreSQL credentials, real MQTT clients (MQTT.js, raw packets).

interface Login {
  readonly username: string;
  readonly password: string;
}
const SENSOR_1: Login = { username: 'sensor-1', password: 'sensor-one-pass' };
const SENSOR_2: Login = { username: 'sensor-2', password: 'sensor-two-pass' };
const DASH: Login = { username: 'dash', password: 'dashboard-pass' };
const DASH_B: Login = { username: 'dash-b', password: 'dashboard-b-pass' };
const FLEX: Login = { username: 'flex', password: 'flexible-pass' };
const ROOT: Login = { username: 'root', password: 'administrator' };

interface Session {
  c: MqttClient;
  messages: Array<{ topic: string; payload: string }>;
  closes: number;
}

describe('client ids are bound to the login that created the session (issue 12.2)', () => {
  let url: string;
  let pool: pg.Pool;
  let t: TestApp;
  const opened: MqttClient[] = [];

  async function connect(who: Login, clientId: string, clean: boolean, extra: IClientOptions = {}) {
    const c = await mqtt.connectAsync(t.mqttUrl, {
      protocolVersion: 4,
      username: who.username,
      password: who.password,
      clientId,
      clean,
      reconnectPeriod: 0,
      ...extra,
    });
    opened.push(c);
    const s: Session = { c, messages: [], closes: 0 };
    c.on('message', (topic, payload) => s.messages.push({ topic, payload: payload.toString() }));
    c.on('close', () => s.closes++);
    return s;
  }

  /** A CONNECT in raw bytes: what the broker answers, and whether it sends anything else. */
  function rawConnect(who: Login, clientId: string, clean: boolean, waitMs = 1500) {
    return rawSession(
      t.app.mqttPort,
      [connectPacket(clientId, { clean, username: who.username, password: Buffer.from(who.password) })],
      waitMs,
    );
  }

  async function publish(who: Login, topic: string, payload: string): Promise<void> {
    const c = await mqtt.connectAsync(t.mqttUrl, {
      protocolVersion: 4,
      username: who.username,
      password: who.password,
      reconnectPeriod: 0,
    });
    await c.publishAsync(topic, payload, { qos: 1 });
    await c.endAsync();
  }

  async function metric(name: string): Promise<number> {
    const text = await (await fetch(`${t.httpUrl}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name} `));
    return line ? Number(line.split(' ')[1]) : 0;
  }

  beforeAll(async () => {
    url = await freshDatabase(inject('postgresUrl'), 'session_hijack_e2e');
    await migrate(url);
    pool = new pg.Pool({ connectionString: url, max: 2 });
    await pool.query(`INSERT INTO buildings (id, name, address) VALUES (1, 'A', 'a'), (2, 'B', 'b')`);
    const devices: Array<[Login, string, number | null]> = [
      [SENSOR_1, 'sensor', 1],
      [SENSOR_2, 'sensor', 2],
      [DASH, 'dashboard', null],
      [DASH_B, 'dashboard', null],
      [FLEX, 'dashboard', null],
      [ROOT, 'admin', null],
    ];
    for (const [who, role, buildingId] of devices) {
      await upsertDevice(pool, {
        username: who.username,
        passwordHash: await hashPassword(who.password),
        role,
        buildingId,
      });
    }
    t = await startApp({
      DATABASE_URL: url,
      ALLOW_ANONYMOUS: 'false',
      EI_MQTT_CONNECT_RATE_PER_IP: '100000',
    });
  }, 60_000);

  afterAll(async () => {
    for (const c of opened) c.end(true);
    await t?.stop();
    await pool?.end();
  });

  it("a sensor with a dashboard's client id (clean session 0) is refused with 0x02 and gets none of its queued messages", async () => {
    const dash = await connect(DASH, 'dash-1', false);
    await dash.c.subscribeAsync('sensors/building_002/#', { qos: 1 });
    await dash.c.endAsync();
    const queuedBefore = await metric('energy_ingest_session_queued_messages');
    await publish(SENSOR_2, 'sensors/building_002/1/r/temperature', '21.5');
    await eventually(
      async () => (await metric('energy_ingest_session_queued_messages')) > queuedBefore,
      10_000,
      'message queued for dash-1',
    );

    const r = await rawConnect(SENSOR_1, 'dash-1', false);
    const connack = r.packets.find((p) => p.cmd === 'connack') as IConnackPacket | undefined;
    expect(connack?.returnCode).toBe(2);
    expect(r.packets.filter((p) => p.cmd === 'publish')).toEqual([]);
    expect(r.closed).toBe(true);
    expect(t.app.metrics.authRefused.get({ reason: 'client_id_taken' })).toBeGreaterThanOrEqual(1);

    // the dashboard's session and queue are intact
    const back = await connect(DASH, 'dash-1', false);
    await eventually(async () => back.messages.length > 0, 10_000, 'queued message delivered to dash-1');
    expect(back.messages).toEqual([{ topic: 'sensors/building_002/1/r/temperature', payload: '21.5' }]);
    await back.c.endAsync();
  });

  it('a takeover by another login neither disconnects the victim nor wipes its session', async () => {
    const victim = await connect(DASH, 'dash-2', false);
    await victim.c.subscribeAsync('sensors/building_002/#', { qos: 1 });
    const refusedBefore = t.app.metrics.authRefused.get({ reason: 'client_id_taken' });
    // clean session 1 would wipe the session; clean 0 would steal it; another dashboard is another login too
    for (const [who, clean] of [
      [SENSOR_1, true],
      [SENSOR_1, false],
      [DASH_B, true],
    ] as const) {
      const r = await rawConnect(who, 'dash-2', clean, 1000);
      const connack = r.packets.find((p) => p.cmd === 'connack') as IConnackPacket | undefined;
      expect(connack?.returnCode).toBe(2);
    }
    await expect(
      mqtt.connectAsync(t.mqttUrl, {
        protocolVersion: 4,
        username: DASH_B.username,
        password: DASH_B.password,
        clientId: 'dash-2',
        reconnectPeriod: 0,
      }),
    ).rejects.toThrow(/identifier rejected/i);
    expect(t.app.metrics.authRefused.get({ reason: 'client_id_taken' })).toBe(refusedBefore + 4);
    expect(victim.closes).toBe(0);
    expect(victim.c.connected).toBe(true);

    await publish(SENSOR_2, 'sensors/building_002/1/r/power', '1');
    await eventually(async () => victim.messages.length === 1, 10_000, 'live message to the victim');
    await victim.c.endAsync();
    await publish(SENSOR_2, 'sensors/building_002/1/r/power', '2');
    const back = await connect(DASH, 'dash-2', false);
    await eventually(async () => back.messages.length === 1, 10_000, 'queued message after reconnect');
    expect(back.messages[0]).toEqual({ topic: 'sensors/building_002/1/r/power', payload: '2' });
    await back.c.endAsync();
  });

  it('the same login taking over its own client id still works [MQTT-3.1.4-2]', async () => {
    const first = await connect(DASH, 'dash-3', false);
    await first.c.subscribeAsync('sensors/building_002/#', { qos: 1 });
    const firstClosed = new Promise<void>((resolve) => first.c.once('close', () => resolve()));
    const second = await connect(DASH, 'dash-3', false);
    await firstClosed; // the broker closed the old connection
    await publish(SENSOR_2, 'sensors/building_002/1/r/power', '3');
    await eventually(async () => second.messages.length === 1, 10_000, 'message to the new connection');
    expect(first.messages).toEqual([]);
    // and a clean takeover by the same login ends the old session as MQTT requires
    const third = await connect(DASH, 'dash-3', true);
    await publish(SENSOR_2, 'sensors/building_002/1/r/power', '4');
    await new Promise((r) => setTimeout(r, 500));
    expect(third.messages).toEqual([]);
    await third.c.endAsync();
  });

  it('a refused CONNECT with clean session 1 does not wipe the holder’s QoS 2 receive state [MQTT-4.3.3]', async () => {
    const watch = await connect(DASH, 'dash-q2', true);
    await watch.c.subscribeAsync('sensors/building_001/9/#', { qos: 1 });
    const publish7 = {
      cmd: 'publish',
      qos: 2,
      messageId: 7,
      topic: 'sensors/building_001/9/r/power',
      payload: Buffer.from('5'),
      retain: false,
      dup: false,
    } as const;
    const login = { clean: false, username: ROOT.username, password: Buffer.from(ROOT.password) };
    // an admin's persistent session (a subscription keeps it) publishes QoS 2 and is cut off before PUBREL
    const first = await rawSession(
      t.app.mqttPort,
      [
        connectPacket('q2-holder', login),
        { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'plain/#', qos: 1 }] },
        publish7,
      ],
      2500,
    );
    expect(first.packets.map((p) => p.cmd)).toEqual(['connack', 'suback', 'pubrec']);
    // another login, and a wrong password, both asking for a clean session under its id
    expect((await rawConnect(SENSOR_2, 'q2-holder', true, 2500)).packets[0]).toMatchObject({ returnCode: 2 });
    const wrong = await rawSession(
      t.app.mqttPort,
      [
        connectPacket('q2-holder', {
          clean: true,
          username: ROOT.username,
          password: Buffer.from('wrong!!'),
        }),
      ],
      2500,
    );
    expect(wrong.packets[0]).toMatchObject({ cmd: 'connack', returnCode: 4 });
    // the holder resumes: its retransmitted PUBLISH is recognised, not delivered a second time
    // (PUBREL only after PUBREC, as a client does: the ingress's fsync delays PUBREC)
    const again = await rawSession(
      t.app.mqttPort,
      [connectPacket('q2-holder', login), { ...publish7, dup: true }],
      2500,
    );
    expect(again.packets.map((p) => p.cmd)).toEqual(['connack', 'pubrec']);
    const done = await rawSession(
      t.app.mqttPort,
      [connectPacket('q2-holder', login), { cmd: 'pubrel', messageId: 7 }],
      2500,
    );
    expect(done.packets.map((p) => p.cmd)).toEqual(['connack', 'pubcomp']);
    await new Promise((r) => setTimeout(r, 500));
    expect(watch.messages).toEqual([{ topic: 'sensors/building_001/9/r/power', payload: '5' }]);
    await watch.c.endAsync();
  });

  it('an admin cannot close another login’s connection through $SYS/+/new/clients', async () => {
    const victim = await connect(DASH, 'dash-4', true);
    const root = await connect(ROOT, 'root-1', true);
    const denied = t.app.metrics.authRefused.get({ reason: 'publish_denied' });
    // Aedes closes the client a $SYS/{other broker}/new/clients message names (its cluster takeover)
    root.c.publish('$SYS/another-broker/new/clients', 'dash-4', { qos: 0 });
    await eventually(
      async () => victim.closes > 0 || t.app.metrics.authRefused.get({ reason: 'publish_denied' }) > denied,
      10_000,
      'the $SYS publish handled',
    );
    await new Promise((r) => setTimeout(r, 300));
    expect(victim.closes).toBe(0);
    expect(t.app.metrics.authRefused.get({ reason: 'publish_denied' })).toBe(denied + 1);
    await victim.c.endAsync();
  });

  it('authorizeForward: a login whose ACL no longer allows a topic gets no messages on it, queued or live', async () => {
    const flex = await connect(FLEX, 'flex-1', false);
    await flex.c.subscribeAsync('sensors/#', { qos: 1 });
    await flex.c.endAsync();
    // the device becomes a sensor of building 1: sensors subscribe to (and read) nothing
    await pool.query(`UPDATE mqtt_devices SET role = 'sensor', building_id = 1 WHERE username = 'flex'`);
    await eventually(
      async () => {
        const probe = await mqtt.connectAsync(t.mqttUrl, {
          protocolVersion: 4,
          username: FLEX.username,
          password: FLEX.password,
          clientId: 'flex-probe',
          reconnectPeriod: 0,
        });
        const denied = await probe.subscribeAsync('sensors/#').then(
          () => false,
          () => true,
        );
        await probe.endAsync();
        return denied;
      },
      15_000,
      'the role change loaded',
    );
    const written = t.app.metrics.pointsWritten.get();
    await publish(SENSOR_1, 'sensors/building_001/1/r/temperature', '30'); // queued for flex-1
    const back = await connect(FLEX, 'flex-1', false);
    await publish(SENSOR_1, 'sensors/building_001/1/r/temperature', '31'); // live
    await eventually(async () => t.app.metrics.pointsWritten.get() >= written + 2, 10_000, 'both stored');
    await new Promise((r) => setTimeout(r, 500));
    expect(back.messages).toEqual([]);
    expect(t.app.metrics.authRefused.get({ reason: 'forward_denied' })).toBeGreaterThanOrEqual(1);
    await back.c.endAsync();
  });
  it('a binding lasts as long as its session: a clean one until disconnect, a persistent one until expiry', async () => {
    const t2 = await startApp({
      DATABASE_URL: url,
      ALLOW_ANONYMOUS: 'false',
      EI_MQTT_SESSION_EXPIRY_SECONDS: '2',
    });
    const raw = (who: Login, id: string) =>
      rawSession(
        t2.app.mqttPort,
        [connectPacket(id, { clean: false, username: who.username, password: Buffer.from(who.password) })],
        1500,
      ).then((r) => r.packets.find((p) => p.cmd === 'connack') as IConnackPacket | undefined);
    try {
      const clean = await mqtt.connectAsync(t2.mqttUrl, {
        protocolVersion: 4,
        username: DASH.username,
        password: DASH.password,
        clientId: 'c-1',
      });
      await clean.endAsync();
      expect((await raw(SENSOR_1, 'c-1'))?.returnCode).toBe(0);

      const kept = await mqtt.connectAsync(t2.mqttUrl, {
        protocolVersion: 4,
        username: DASH.username,
        password: DASH.password,
        clientId: 'p-1',
        clean: false,
      });
      await kept.subscribeAsync('sensors/building_002/#', { qos: 1 });
      await kept.endAsync();
      expect((await raw(SENSOR_1, 'p-1'))?.returnCode).toBe(2);
      // once the session has expired, the id is free (and nothing of the session is left)
      const after = await eventually(
        async () => {
          const c = await raw(SENSOR_1, 'p-1');
          return c?.returnCode === 0 ? c : undefined;
        },
        15_000,
        'the expired session unbound',
      );
      expect(after.sessionPresent).toBe(false);
    } finally {
      await t2.stop();
    }
  });
});

describe('regression guards: the ACL against spellings of another building, and wills (issue 12)', () => {
  let url: string;
  let pool: pg.Pool;
  let t: TestApp;

  function stored(): string {
    const dir = join(t.dataDir, 'readings');
    let files: string[] = [];
    try {
      files = readdirSync(dir);
    } catch {
      return '';
    }
    return files.map((f) => readFileSync(join(dir, f), 'utf8')).join('');
  }

  async function observer(): Promise<{ c: MqttClient; got: IPublishPacket[] }> {
    const c = await mqtt.connectAsync(t.mqttUrl, {
      protocolVersion: 4,
      username: ROOT.username,
      password: ROOT.password,
      reconnectPeriod: 0,
    });
    const got: IPublishPacket[] = [];
    c.on('message', (_topic, _payload, packet) => got.push(packet));
    await c.subscribeAsync({ 'sensors/#': { qos: 1 }, 'alerts/#': { qos: 1 } });
    return { c, got };
  }

  beforeAll(async () => {
    url = await freshDatabase(inject('postgresUrl'), 'acl_guards_e2e');
    await migrate(url);
    pool = new pg.Pool({ connectionString: url, max: 2 });
    await pool.query(`INSERT INTO buildings (id, name, address) VALUES (1, 'A', 'a'), (2, 'B', 'b')`);
    for (const [who, role, b] of [
      [SENSOR_1, 'sensor', 1],
      [ROOT, 'admin', null],
    ] as const) {
      await upsertDevice(pool, {
        username: who.username,
        passwordHash: await hashPassword(who.password),
        role,
        buildingId: b,
      });
    }
    t = await startApp({
      DATABASE_URL: url,
      ALLOW_ANONYMOUS: 'false',
      EI_MQTT_CONNECT_RATE_PER_IP: '100000',
    });
  }, 60_000);

  afterAll(async () => {
    await t?.stop();
    await pool?.end();
  });

  it('a sensor of building 1 cannot publish for building 2 under any spelling', async () => {
    const watch = await observer();
    const segments = [
      '002',
      '2',
      'building_002',
      'building_0002',
      'building_2',
      'Building_002',
      'building_２', // fullwidth digit
      'building_００２',
      '２',
      '٢', // Arabic-Indic
      'building_٠٠٢',
      '', // empty level: sensors//…
      'building_002 ',
      'building_002\u200b',
    ];
    const refused = t.app.metrics.authRefused.get({ reason: 'publish_denied' });
    for (const segment of segments) {
      const c = await mqtt.connectAsync(t.mqttUrl, {
        protocolVersion: 4,
        username: SENSOR_1.username,
        password: SENSOR_1.password,
        reconnectPeriod: 0,
      });
      const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
      c.publish(`sensors/${segment}/1/r/power`, '666', { qos: 1 });
      await closed;
    }
    expect(t.app.metrics.authRefused.get({ reason: 'publish_denied' })).toBe(refused + segments.length);
    // the ACL holds for its own building: the same connection style is accepted there
    const written = t.app.metrics.pointsWritten.get();
    const ok = await mqtt.connectAsync(t.mqttUrl, {
      protocolVersion: 4,
      username: SENSOR_1.username,
      password: SENSOR_1.password,
      reconnectPeriod: 0,
    });
    await ok.publishAsync('sensors/building_001/1/r/power', '1', { qos: 1 });
    await ok.endAsync();
    await eventually(async () => t.app.metrics.pointsWritten.get() > written, 10_000, 'own reading stored');
    expect(stored()).toContain('building_001');
    expect(stored()).not.toContain('666');
    expect(watch.got.map((p) => p.topic)).toEqual(['sensors/building_001/1/r/power']);
    await watch.c.endAsync();
  });

  it("a sensor's will on another building's topic or on alerts/ is never published", async () => {
    const watch = await observer();
    const refused = t.app.metrics.authRefused.get({ reason: 'publish_denied' });
    const wills = [
      'sensors/building_002/1/r/power',
      'sensors/002/1/r/power',
      'alerts/building_002/forged',
      'alerts/building_001/forged',
    ];
    for (const topic of wills) {
      const c = await mqtt.connectAsync(t.mqttUrl, {
        protocolVersion: 4,
        username: SENSOR_1.username,
        password: SENSOR_1.password,
        reconnectPeriod: 0,
        will: { topic, payload: Buffer.from('{"value":666}'), qos: 1, retain: true },
      });
      // an abrupt end (no DISCONNECT) is what publishes a will
      c.stream.destroy();
    }
    await eventually(
      async () => t.app.metrics.authRefused.get({ reason: 'publish_denied' }) >= refused + wills.length,
      10_000,
      'every will refused',
    );
    await new Promise((r) => setTimeout(r, 500));
    expect(watch.got).toEqual([]);
    expect(stored()).not.toContain('666');
    // nor retained for later subscribers
    const late = await observer();
    await new Promise((r) => setTimeout(r, 300));
    expect(late.got).toEqual([]);
    await Promise.all([watch.c.endAsync(), late.c.endAsync()]);
  });
});
