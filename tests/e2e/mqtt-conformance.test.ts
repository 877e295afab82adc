import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mosquittoPub, startApp, type TestApp } from '../helpers/app.js';
import { connectPacket, rawSession } from '../helpers/rawMqtt.js';

const exec = promisify(execFile);

/** mosquitto_sub printing "retain-flag topic payload" per message; resolves after `count` messages. */
async function mosquittoSub(
  port: number,
  topic: string,
  count: number,
  extra: string[] = [],
): Promise<string[]> {
  const { stdout } = await exec(
    'mosquitto_sub',
    [
      '-h',
      '127.0.0.1',
      '-p',
      String(port),
      '-t',
      topic,
      '-C',
      String(count),
      '-W',
      '5',
      '-F',
      '%r %t %p',
      ...extra,
    ],
    { timeout: 10_000 },
  );
  return stdout.trim().split('\n');
}

/** Start mosquitto_sub, give it time to subscribe, then run `act`. */
async function subscribedWhile(
  port: number,
  topic: string,
  count: number,
  act: () => Promise<void>,
): Promise<string[]> {
  const child = spawn('mosquitto_sub', [
    '-h',
    '127.0.0.1',
    '-p',
    String(port),
    '-t',
    topic,
    '-C',
    String(count),
    '-W',
    '5',
    '-F',
    '%r %t %p',
  ]);
  let out = '';
  child.stdout.on('data', (b) => {
    out += b;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // mosquitto_sub cannot tell us when its SUBACK arrived; a loaded CI machine needs the margin
  await new Promise((r) => setTimeout(r, 1000));
  await act();
  await exited;
  return out.trim().split('\n');
}

describe('MQTT 3.1.1 behaviour with real clients', () => {
  let t: TestApp;
  let port: number;
  beforeAll(async () => {
    t = await startApp();
    port = t.app.mqttPort;
  });
  afterAll(async () => {
    await t.stop();
  });

  it('relays publishes on any topic to subscribers (mosquitto_pub → mosquitto_sub), retain flag 0 on live delivery', async () => {
    const got = await subscribedWhile(port, 'plain/#', 1, () =>
      mosquittoPub(port, 'plain/hello', 'world', 1, ['-r']),
    );
    expect(got).toEqual(['0 plain/hello world']);
  });

  it('retained messages reach late subscribers with the retain flag, and an empty retained message removes them', async () => {
    await mosquittoPub(port, 'plain/retained', 'kept', 1, ['-r']);
    expect(await mosquittoSub(port, 'plain/retained', 1)).toEqual(['1 plain/retained kept']);
    await mosquittoPub(port, 'plain/retained', null, 1, ['-r']);
    await expect(mosquittoSub(port, 'plain/retained', 1)).rejects.toMatchObject({ code: 27 }); // -W timeout: nothing retained
  });

  it('sensor readings are relayed too, so dashboards can subscribe to sensors/#', async () => {
    const got = await subscribedWhile(port, 'sensors/#', 1, () =>
      mosquittoPub(port, 'sensors/building_001/1/lobby/temperature', '21'),
    );
    expect(got).toEqual(['0 sensors/building_001/1/lobby/temperature 21']);
  });

  it('publishes the will of a client that vanishes', async () => {
    const got = await subscribedWhile(port, 'devices/+/status', 1, async () => {
      const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
        protocolVersion: 4,
        will: { topic: 'devices/d1/status', payload: Buffer.from('offline'), qos: 1, retain: false },
        reconnectPeriod: 0,
      });
      c.stream.destroy(); // no DISCONNECT: an ungraceful loss
    });
    expect(got).toEqual(['0 devices/d1/status offline']);
  });

  it('QoS 2 is delivered exactly once', async () => {
    const sub = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4 });
    const seen: string[] = [];
    sub.on('message', (_t, p) => seen.push(p.toString()));
    await sub.subscribeAsync('q2/test', { qos: 2 });
    const pub = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4 });
    for (let i = 0; i < 20; i++) await pub.publishAsync('q2/test', `m${i}`, { qos: 2 });
    await new Promise((r) => setTimeout(r, 300));
    await pub.endAsync();
    await sub.endAsync();
    expect(seen).toEqual(Array.from({ length: 20 }, (_, i) => `m${i}`));
  });

  it('keeps QoS 1 messages for an offline persistent session and delivers them on reconnect', async () => {
    const opts = { protocolVersion: 4 as const, clientId: 'persistent-dash', clean: false };
    const sub = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, opts);
    await sub.subscribeAsync('persist/#', { qos: 1 });
    await sub.endAsync();
    await mosquittoPub(port, 'persist/a', 'while-away', 1);
    const back = mqtt.connect(`mqtt://127.0.0.1:${port}`, { ...opts, manualConnect: true });
    const got = new Promise<string>((resolve) => back.on('message', (_t, p) => resolve(p.toString())));
    back.connect();
    expect(await got).toBe('while-away');
    await back.endAsync();
  });

  it('does not match $SYS topics with # [MQTT-4.7.2-1]', async () => {
    const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4 });
    const topics: string[] = [];
    c.on('message', (topic) => topics.push(topic));
    await c.subscribeAsync('#');
    await mosquittoPub(port, 'plain/x', 'y');
    await new Promise((r) => setTimeout(r, 300));
    await c.endAsync();
    expect(topics).toContain('plain/x');
    expect(topics.filter((x) => x.startsWith('$'))).toEqual([]);
  });

  it('disconnects a client that misses 1.5 keep-alive periods [MQTT-3.1.2-24]', async () => {
    const r = await rawSession(port, [connectPacket('sleepy', { keepalive: 1 })], 4000);
    expect(r.packets[0]).toMatchObject({ cmd: 'connack', returnCode: 0 });
    expect(r.closed).toBe(true);
    expect(r.closedAfterMs).toBeGreaterThanOrEqual(1400);
    expect(r.closedAfterMs).toBeLessThan(3500);
  });

  it('answers an empty client id with clean session 0 by CONNACK 0x02 and closes [MQTT-3.1.3-8] (corrected hook)', async () => {
    // mqtt-packet refuses to encode this packet, so it is written by hand
    const r = await rawSession(port, [Buffer.from('100c00044d5154540400001e0000', 'hex')]);
    expect(r.packets).toEqual([expect.objectContaining({ cmd: 'connack', returnCode: 2 })]);
    expect(r.closed).toBe(true);
  });

  it('accepts an empty client id with clean session 1 [MQTT-3.1.3-6]', async () => {
    const r = await rawSession(port, [connectPacket('')]);
    expect(r.packets[0]).toMatchObject({ cmd: 'connack', returnCode: 0 });
  });

  it('refuses MQTT 5 with CONNACK 0x01 (unacceptable protocol level) [MQTT-3.1.2-2]', async () => {
    const r = await rawSession(port, [connectPacket('v5', { protocolVersion: 5 })]);
    expect(r.packets[0]).toMatchObject({ cmd: 'connack', returnCode: 1 });
    expect(r.closed).toBe(true);
  });

  it('closes on a second CONNECT [MQTT-3.1.0-2] and on wildcards in PUBLISH [MQTT-3.3.2-2]', async () => {
    expect((await rawSession(port, [connectPacket('twice'), connectPacket('twice')])).closed).toBe(true);
    const wild = await rawSession(port, [
      connectPacket('wild'),
      { cmd: 'publish', topic: 'a/+', payload: 'x', qos: 0, retain: false, dup: false },
    ]);
    expect(wild.closed).toBe(true);
  });

  it('grants the requested QoS in SUBACK [MQTT-3.9.3-1]', async () => {
    const r = await rawSession(port, [
      connectPacket('granter'),
      {
        cmd: 'subscribe',
        messageId: 7,
        subscriptions: [
          { topic: 'a', qos: 0 },
          { topic: 'b/+', qos: 1 },
          { topic: 'c/#', qos: 2 },
        ],
      },
    ]);
    expect(r.packets[1]).toMatchObject({ cmd: 'suback', messageId: 7, granted: [0, 1, 2] });
  });
});

describe('shutdown', () => {
  it('stops promptly with clients still connected (listeners close after the clients do)', async () => {
    const t = await startApp();
    const clients = await Promise.all(
      [0, 1, 2].map(() =>
        mqtt.connectAsync(`mqtt://127.0.0.1:${t.app.mqttPort}`, { protocolVersion: 4, reconnectPeriod: 100 }),
      ),
    );
    const t0 = Date.now();
    await t.stop();
    expect(Date.now() - t0).toBeLessThan(3000);
    for (const c of clients) await c.endAsync(true);
  });
});
