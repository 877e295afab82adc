import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import mqttPacket, { type Packet } from 'mqtt-packet';
import pg from 'pg';
import { describe, expect, inject, it } from 'vitest';
import { WebSocket } from 'ws';
import type { Broker } from '../../src/broker/broker.js';
import { migrate } from '../../src/metadata/migrations.js';
import { startApp } from '../helpers/app.js';
import { type DaemonProcess, metricValue, spawnDaemon } from '../helpers/daemon.js';
import { connectPacket } from '../helpers/rawMqtt.js';
import { eventually, freshDatabase, tempDir } from '../helpers/services.js';

// The embedded broker's memory and queue bounds (issue 11, items 4-7): a
// subscriber that stops reading, offline persistent sessions, retained
// messages and unfinished WebSocket frames must not grow the daemon's memory
// or slow anyone else down.

const TOPIC = 'sensors/building_001/1/r1/power';
const reading = (i: number) => JSON.stringify({ value: i, timestamp: Date.now() });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The daemon's resident set in bytes (from /proc, so nothing in the test process counts). */
function rssOf(d: DaemonProcess): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${d.child.pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) * 1024;
}

/** The smallest of a few samples a little apart: garbage not yet collected does not count. */
async function settled(read: () => Promise<number> | number, samples = 5, gapMs = 400): Promise<number> {
  let min = Number.POSITIVE_INFINITY;
  for (let i = 0; i < samples; i++) {
    min = Math.min(min, await read());
    await sleep(gapMs);
  }
  return min;
}

async function stopDaemon(d: DaemonProcess, dataDir: string): Promise<void> {
  if (d.child.exitCode === null) d.child.kill('SIGKILL');
  await d.exited;
  rmSync(dataDir, { recursive: true, force: true });
}

/**
 * `n` QoS 1 publishes, 10 in flight: publish → PUBACK latencies. Rejects when
 * the PUBACKs stop coming for longer than `limitMs` altogether.
 */
async function pace(c: MqttClient, n: number, limitMs: number): Promise<{ p99: number; ms: number }> {
  const lat: number[] = [];
  let next = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < n) {
      const i = next++;
      const s = performance.now();
      await c.publishAsync(TOPIC, reading(i), { qos: 1 });
      lat.push(performance.now() - s);
    }
  };
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`PUBACKs stalled: ${lat.length} of ${n} after ${limitMs} ms`)),
      limitMs,
    );
  });
  try {
    await Promise.race([Promise.all(Array.from({ length: 10 }, worker)), timeout]);
  } finally {
    clearTimeout(timer);
  }
  lat.sort((a, b) => a - b);
  return { p99: lat[Math.floor(lat.length * 0.99)]!, ms: performance.now() - t0 };
}

/** A raw MQTT client that subscribes, then never reads its socket again. */
function stalledSubscriber(port: number, clientId: string, clean: boolean): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, '127.0.0.1');
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on('packet', (p: Packet) => {
      if (p.cmd !== 'suback') return;
      socket.removeAllListeners('data');
      socket.pause();
      resolve(socket);
    });
    socket.on('data', (d) => parser.parse(d));
    socket.on('error', reject);
    socket.write(mqttPacket.generate(connectPacket(clientId, { clean })));
    socket.write(
      mqttPacket.generate({
        cmd: 'subscribe',
        messageId: 1,
        subscriptions: [
          { topic: 'sensors/#', qos: 1 },
          { topic: 'bulk/#', qos: 0 },
        ],
      }),
    );
  });
}

describe('item 4: a subscriber that stops reading slows nobody down', () => {
  it('publishers keep their PUBACK pace while a sensors/# subscriber is stalled; it is cut off beyond mqtt.maxQueuedBytesPerClient', async () => {
    const t = await startApp({
      EI_INGEST_ACCEPT_UNKNOWN_BUILDINGS: 'true',
      EI_PIPELINE_DURABILITY: 'relaxed',
    });
    const clients: MqttClient[] = [];
    let stalled: Socket | undefined;
    try {
      const aedes = (t.app as unknown as { broker: { broker: Broker } }).broker.broker
        .aedesInstance as unknown as {
        clients: Record<string, { conn: { writableLength: number } } | undefined>;
      };
      const pub = await mqtt.connectAsync(t.mqttUrl, { protocolVersion: 4, clientId: 'pub' });
      const filler = await mqtt.connectAsync(t.mqttUrl, { protocolVersion: 4, clientId: 'filler' });
      clients.push(pub, filler);
      await pace(pub, 500, 20_000); // warm-up
      const baseline = await pace(pub, 3000, 30_000);

      // a persistent QoS 1 session, so its outgoing inflight store is exercised as well
      stalled = await stalledSubscriber(t.app.mqttPort, 'stalled', false);
      const queued = () => aedes.clients.stalled?.conn.writableLength ?? 0;
      // fill the kernel's buffers until bytes wait in the broker for this client
      const big = Buffer.alloc(16 * 1024, 0x61);
      await eventually(
        async () => {
          for (let i = 0; i < 20; i++) filler.publish('bulk/x', big, { qos: 0 });
          await sleep(20);
          return queued() > 64 * 1024;
        },
        20_000,
        'bytes queued for the stalled client',
      );
      const withStalled = await pace(pub, 3000, 15_000);
      console.log(
        `PUBACK p99 ${baseline.p99.toFixed(1)} ms → ${withStalled.p99.toFixed(1)} ms with a stalled subscriber; ` +
          `3000 publishes in ${baseline.ms.toFixed(0)} → ${withStalled.ms.toFixed(0)} ms`,
      );
      expect(withStalled.p99).toBeLessThan(baseline.p99 * 4 + 250);
      expect(withStalled.ms).toBeLessThan(baseline.ms * 3 + 3000);
      expect(t.app.metrics.slowConsumersDisconnected.get()).toBe(0);

      // more than 8 MiB (the default) waiting for it: cut off, and the others carry on
      await eventually(
        async () => {
          for (let i = 0; i < 40; i++) filler.publish('bulk/x', big, { qos: 0 });
          await sleep(20);
          return t.app.metrics.slowConsumersDisconnected.get() === 1;
        },
        20_000,
        'stalled client disconnected',
      );
      await eventually(async () => aedes.clients.stalled === undefined, 10_000, 'stalled client gone');
      const after = await pace(pub, 500, 15_000);
      expect(after.p99).toBeLessThan(baseline.p99 * 4 + 250);
      const metrics = await (await fetch(`${t.httpUrl}/metrics`)).text();
      expect(metricValue(metrics, 'energy_ingest_slow_consumers_disconnected_total')).toBe(1);
    } finally {
      stalled?.destroy();
      await Promise.all(clients.map((c) => c.endAsync(true)));
      await t.stop();
    }
  });
  it('the same over WebSocket: a stalled subscriber is cut off, publishers keep getting PUBACKs', async () => {
    const t = await startApp({
      EI_INGEST_ACCEPT_UNKNOWN_BUILDINGS: 'true',
      EI_PIPELINE_DURABILITY: 'relaxed',
      EI_MQTT_MAX_QUEUED_BYTES_PER_CLIENT: '1MiB',
    });
    const clients: MqttClient[] = [];
    let ws: WebSocket | undefined;
    try {
      const pub = await mqtt.connectAsync(t.mqttUrl, { protocolVersion: 4, clientId: 'pub' });
      const filler = await mqtt.connectAsync(t.mqttUrl, { protocolVersion: 4, clientId: 'filler' });
      clients.push(pub, filler);
      const sock = new WebSocket(`ws://127.0.0.1:${t.app.httpPort}/mqtt`, 'mqtt');
      ws = sock;
      const parser = mqttPacket.parser({ protocolVersion: 4 });
      await new Promise<void>((resolve, reject) => {
        sock.once('error', reject);
        sock.once('open', () => {
          sock.send(mqttPacket.generate(connectPacket('ws-stalled')));
          sock.send(
            mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '#', qos: 0 }] }),
          );
        });
        parser.on('packet', (p: Packet) => {
          if (p.cmd !== 'suback') return;
          // stop reading: the underlying TCP socket is no longer read
          (sock as unknown as { _socket: Socket })._socket.pause();
          resolve();
        });
        sock.on('message', (d: Buffer) => parser.parse(d));
      });
      const big = Buffer.alloc(16 * 1024, 0x61);
      await eventually(
        async () => {
          for (let i = 0; i < 40; i++) filler.publish('bulk/x', big, { qos: 0 });
          await pace(pub, 20, 5_000);
          return t.app.metrics.slowConsumersDisconnected.get() === 1;
        },
        30_000,
        'WebSocket subscriber disconnected',
      );
      const after = await pace(pub, 500, 15_000);
      expect(after.ms).toBeLessThan(15_000);
    } finally {
      ws?.terminate();
      await Promise.all(clients.map((c) => c.endAsync(true)));
      await t.stop();
    }
  });
});

describe('item 5: offline persistent sessions are bounded and expire', () => {
  it('20 offline sessions under 2,000 readings/s: heap stays flat, a session gets only the newest mqtt.maxOfflineMessagesPerSession, the rest are counted', async () => {
    const LIMIT = 500;
    const dataDir = tempDir('offline');
    const d = await spawnDaemon({
      DATA_DIR: dataDir,
      EI_INGEST_ACCEPT_UNKNOWN_BUILDINGS: 'true',
      EI_PIPELINE_DURABILITY: 'relaxed',
      EI_MQTT_MAX_OFFLINE_MESSAGES_PER_SESSION: String(LIMIT),
    });
    const url = `mqtt://127.0.0.1:${d.mqttPort}`;
    const metric = async (name: string) => metricValue(await d.metrics(), name);
    try {
      for (let i = 0; i < 20; i++) {
        const c = await mqtt.connectAsync(url, {
          protocolVersion: 4,
          clientId: `offline-${i}`,
          clean: false,
        });
        await c.subscribeAsync('sensors/#', { qos: 1 });
        await c.endAsync();
      }
      const heapBefore = await settled(() => metric('energy_ingest_nodejs_heap_size_used_bytes'));
      const rssBefore = rssOf(d);

      // 12,000 readings at up to 2,000/s from one publisher (QoS 1: only those are queued for
      // offline sessions); a count, not a duration, so a loaded machine sends the same load slower
      const pub = await mqtt.connectAsync(url, { protocolVersion: 4, clientId: 'flow' });
      let sent = 0;
      const until = Date.now() + 40_000;
      while (sent < 12_000 && Date.now() < until) {
        const tick = Date.now();
        await Promise.all(
          Array.from({ length: 100 }, () => pub.publishAsync(TOPIC, reading(sent++), { qos: 1 })),
        );
        await sleep(Math.max(0, 50 - (Date.now() - tick)));
      }
      await pub.endAsync();
      const heapAfter = await settled(() => metric('energy_ingest_nodejs_heap_size_used_bytes'));
      const rssAfter = rssOf(d);
      console.log(
        `${sent} readings, 20 offline sessions: heap ${(heapBefore / 2 ** 20).toFixed(1)} → ${(heapAfter / 2 ** 20).toFixed(1)} MiB, ` +
          `RSS ${(rssBefore / 2 ** 20).toFixed(0)} → ${(rssAfter / 2 ** 20).toFixed(0)} MiB`,
      );
      expect(sent).toBe(12_000);
      expect(heapAfter - heapBefore).toBeLessThan(30 * 2 ** 20);
      expect(await metric('energy_ingest_offline_messages_dropped_total')).toBe(20 * (sent - LIMIT));

      const values: number[] = [];
      // listening before CONNACK: the queue follows it at once
      const back = mqtt.connect(url, { protocolVersion: 4, clientId: 'offline-0', clean: false });
      back.on('message', (_t, payload) =>
        values.push((JSON.parse(payload.toString()) as { value: number }).value),
      );
      let seen = -1;
      await eventually(
        async () => {
          const n = values.length;
          await sleep(1000);
          if (n === values.length && n === seen) return true;
          seen = n;
          return false;
        },
        20_000,
        'queued messages delivered',
      );
      await back.endAsync();
      expect(values.length).toBe(LIMIT);
      // the newest ones, in order
      expect(values).toEqual(Array.from({ length: LIMIT }, (_, i) => sent - LIMIT + i));
    } finally {
      await stopDaemon(d, dataDir);
    }
  });

  it('a session disconnected longer than mqtt.sessionExpirySeconds is removed with its queue', async () => {
    const t = await startApp({
      EI_INGEST_ACCEPT_UNKNOWN_BUILDINGS: 'true',
      EI_MQTT_SESSION_EXPIRY_SECONDS: '2',
    });
    try {
      const opts = { protocolVersion: 4 as const, clientId: 'expiring', clean: false };
      const c = await mqtt.connectAsync(t.mqttUrl, opts);
      await c.subscribeAsync('sensors/#', { qos: 1 });
      await c.endAsync();
      const pub = await mqtt.connectAsync(t.mqttUrl, { protocolVersion: 4 });
      for (let i = 0; i < 5; i++) await pub.publishAsync(TOPIC, reading(i), { qos: 1 });
      await pub.endAsync();
      await eventually(async () => t.app.metrics.sessionsExpired.get() === 1, 10_000, 'session expired');
      const got: string[] = [];
      const again = mqtt.connect(t.mqttUrl, opts);
      again.on('message', (_t, p) => got.push(p.toString()));
      const connack = await new Promise<{ sessionPresent: boolean }>((resolve) =>
        again.once('connect', (p) => resolve(p)),
      );
      await sleep(1000);
      await again.endAsync();
      expect(connack.sessionPresent).toBe(false);
      expect(got).toEqual([]);
    } finally {
      await t.stop();
    }
  });
  it('persistent sessions holding subscriptions are capped by mqtt.maxPersistentSessions (SUBACK 0x80); clean sessions are not', async () => {
    const t = await startApp({ EI_MQTT_MAX_PERSISTENT_SESSIONS: '2', EI_MQTT_SESSION_EXPIRY_SECONDS: '1' });
    const clients: MqttClient[] = [];
    try {
      const granted = async (clientId: string, clean: boolean) => {
        const c = await mqtt.connectAsync(t.mqttUrl, { protocolVersion: 4, clientId, clean });
        clients.push(c);
        // MQTT.js rejects a SUBACK 0x80 (failure)
        return c.subscribeAsync('sensors/#', { qos: 1 }).then(
          (g) => g[0]!.qos,
          (err: Error) => (/Subscribe error/.test(err.message) ? 128 : -1),
        );
      };
      expect(await granted('keep-1', false)).toBe(1);
      expect(await granted('keep-2', false)).toBe(1);
      expect(await granted('keep-3', false)).toBe(128);
      expect(await granted('clean-1', true)).toBe(1);
      expect(t.app.metrics.authRefused.get({ reason: 'too_many_sessions' })).toBe(1);
      // a session that already holds subscriptions may add more
      expect((await clients[0]!.subscribeAsync('alerts/#', { qos: 1 }))[0]!.qos).toBe(1);
      // once one expires there is room again
      await clients[1]!.endAsync();
      await eventually(async () => t.app.metrics.sessionsExpired.get() === 1, 10_000, 'session expired');
      expect(await granted('keep-4', false)).toBe(1);
    } finally {
      await Promise.all(clients.map((c) => c.endAsync(true)));
      await t.stop();
    }
  });
});

const ALERT_RULES = `
alerts:
  locale: en
  rules:
    - { id: power-warn, sensor_type: power, above: 5000, severity: warning }
`;

/** Retained messages a fresh subscriber gets on `filter` within a second. */
async function retainedOn(url: string, filter: string): Promise<Array<{ topic: string; bytes: number }>> {
  const c = await mqtt.connectAsync(url, { protocolVersion: 4 });
  const got: Array<{ topic: string; bytes: number }> = [];
  c.on('message', (topic, payload, packet) => {
    if (packet.retain) got.push({ topic, bytes: payload.length });
  });
  await c.subscribeAsync(filter, { qos: 1 });
  await sleep(1000);
  await c.endAsync();
  return got;
}

describe('item 6: retained messages are bounded', () => {
  it('400 retained 1 MB messages: memory stays flat, the refusals are counted, small retains and alerts are kept', async () => {
    const dataDir = tempDir('retained');
    const cfg = join(tempDir('retained-cfg'), 'config.yaml');
    writeFileSync(cfg, ALERT_RULES);
    const d = await spawnDaemon({
      DATA_DIR: dataDir,
      ENERGY_INGEST_CONFIG: cfg,
      EI_INGEST_ACCEPT_UNKNOWN_BUILDINGS: 'true',
      EI_MQTT_MAX_RETAINED_MESSAGES: '3',
    });
    const url = `mqtt://127.0.0.1:${d.mqttPort}`;
    try {
      const rssBefore = await settled(() => rssOf(d), 3);
      const c = await mqtt.connectAsync(url, { protocolVersion: 4 });
      const mb = Buffer.alloc(1_000_000, 0x61);
      for (let i = 0; i < 400; i += 10) {
        await Promise.all(
          Array.from({ length: 10 }, (_, k) => c.publishAsync(`junk/${i + k}`, mb, { qos: 1, retain: true })),
        );
      }
      const rssAfter = await settled(() => rssOf(d), 3);
      console.log(
        `400 retained 1 MB publishes: RSS ${(rssBefore / 2 ** 20).toFixed(0)} → ${(rssAfter / 2 ** 20).toFixed(0)} MiB`,
      );
      expect(rssAfter - rssBefore).toBeLessThan(150 * 2 ** 20);
      const m = await d.metrics();
      expect(metricValue(m, 'energy_ingest_retained_refused_total{reason="too_large"}')).toBe(400);

      // small ones are kept up to mqtt.maxRetainedMessages
      for (let i = 0; i < 5; i++) await c.publishAsync(`status/${i}`, 'ok', { qos: 1, retain: true });
      expect((await retainedOn(url, 'status/#')).length).toBe(3);
      expect(metricValue(await d.metrics(), 'energy_ingest_retained_refused_total{reason="count"}')).toBe(2);
      await c.endAsync();

      // the store is full, yet the daemon's own retained alert is kept
      await mqtt.connectAsync(url, { protocolVersion: 4 }).then(async (p) => {
        await p.publishAsync(TOPIC, JSON.stringify({ value: 6000, timestamp: Date.now() }), { qos: 1 });
        await p.endAsync();
      });
      await eventually(
        async () => (await retainedOn(url, 'alerts/#')).length === 1,
        10_000,
        'retained alert',
      );
    } finally {
      await stopDaemon(d, dataDir);
    }
  });

  it('sensors retain nothing unless mqtt.sensorsMayRetain; on sensors/ nothing above mqtt.maxPayloadBytes is retained', async () => {
    const url = await freshDatabase(inject('postgresUrl'), 'broker_bounds_retain');
    await migrate(url);
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    await db.query(`INSERT INTO buildings (id, name, address) VALUES (1, 'A', 'a')`);
    // the hash format `energy-ingest passwd` stores
    const { hashPassword } = await import('../../src/broker/credentials.js');
    await db.query(
      `INSERT INTO mqtt_devices (username, password_hash, role, building_id, enabled) VALUES ('sensor-1', $1, 'sensor', 1, TRUE)`,
      [await hashPassword('s3nsor-pass')],
    );
    await db.end();
    const t = await startApp({ DATABASE_URL: url, EI_MQTT_MAX_PAYLOAD_BYTES: '1KiB' });
    try {
      const s = await mqtt.connectAsync(t.mqttUrl, {
        protocolVersion: 4,
        username: 'sensor-1',
        password: 's3nsor-pass',
      });
      await s.publishAsync(TOPIC, JSON.stringify({ value: 1, timestamp: Date.now() }), {
        qos: 1,
        retain: true,
      });
      await s.endAsync();
      // still ingested, just not stored as retained
      await eventually(async () => t.app.metrics.pointsWritten.get() === 1, 10_000, 'reading written');
      expect(await retainedOn(t.mqttUrl, 'sensors/#')).toEqual([]);
      expect(t.app.metrics.retainedRefused.get({ reason: 'sensor' })).toBe(1);

      // an admin (anonymous on loopback) may retain on sensors/, but not above mqtt.maxPayloadBytes
      const a = await mqtt.connectAsync(t.mqttUrl, { protocolVersion: 4 });
      await a.publishAsync('sensors/building_001/1/r1/big', Buffer.alloc(2048, 0x31), {
        qos: 1,
        retain: true,
      });
      await a.publishAsync('sensors/building_001/1/r1/small', '5', { qos: 1, retain: true });
      await a.endAsync();
      expect((await retainedOn(t.mqttUrl, 'sensors/#')).map((r) => r.topic)).toEqual([
        'sensors/building_001/1/r1/small',
      ]);
      expect(t.app.metrics.retainedRefused.get({ reason: 'too_large' })).toBe(1);
    } finally {
      await t.stop();
    }
  });
});

/** An HTTP upgrade to /mqtt by hand, then a binary frame header announcing `announced` bytes. */
function unfinishedFrame(port: number, announced: number, send: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect(port, '127.0.0.1');
    s.on('error', reject);
    s.write(
      'GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n' +
        'Sec-WebSocket-Protocol: mqtt\r\n\r\n',
    );
    s.once('data', (d) => {
      if (!d.toString().startsWith('HTTP/1.1 101')) return reject(new Error(d.toString()));
      const header = Buffer.alloc(14);
      header[0] = 0x82; // FIN, binary
      header[1] = 0x80 | 127; // masked, 64-bit length
      header.writeBigUInt64BE(BigInt(announced), 2);
      // mask key 0: the payload goes through unchanged
      s.write(header);
      const chunk = Buffer.alloc(1024 * 1024, 0x30);
      for (let sent = 0; sent < send; sent += chunk.length) s.write(chunk);
      resolve(s);
    });
  });
}

describe('item 7: WebSocket frames and pending connections are bounded', () => {
  it('an oversized unfinished frame closes the connection at once and grows no memory', async () => {
    const dataDir = tempDir('ws-frame');
    const d = await spawnDaemon({ DATA_DIR: dataDir });
    const sockets: Socket[] = [];
    try {
      const before = await settled(() => rssOf(d), 3);
      const closed: Array<Promise<void>> = [];
      for (let i = 0; i < 4; i++) {
        const s = await unfinishedFrame(d.httpPort, 95 * 2 ** 20, 40 * 2 ** 20);
        sockets.push(s);
        closed.push(new Promise((r) => s.once('close', () => r())));
        s.resume();
      }
      const all = Promise.all(closed).then(() => true);
      expect(await Promise.race([all, sleep(5000).then(() => false)])).toBe(true);
      const after = await settled(() => rssOf(d), 3);
      console.log(
        `4 unfinished 95 MiB frames: RSS ${(before / 2 ** 20).toFixed(0)} → ${(after / 2 ** 20).toFixed(0)} MiB`,
      );
      expect(after - before).toBeLessThan(50 * 2 ** 20);
    } finally {
      for (const s of sockets) s.destroy();
      await stopDaemon(d, dataDir);
    }
  });

  it('refuses WebSocket connections beyond mqtt.maxPendingWebSocketConnections that have not finished CONNECT; MQTT over WS still works', async () => {
    const t = await startApp({ EI_MQTT_MAX_PENDING_WEB_SOCKET_CONNECTIONS: '5' });
    const open: WebSocket[] = [];
    try {
      const wsUrl = `ws://127.0.0.1:${t.app.httpPort}/mqtt`;
      const attempt = () =>
        new Promise<number>((resolve) => {
          const ws = new WebSocket(wsUrl, 'mqtt');
          open.push(ws);
          ws.once('open', () => resolve(101));
          ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
          ws.once('close', () => resolve(0));
          ws.once('error', () => resolve(0));
        });
      const codes: number[] = [];
      for (let i = 0; i < 7; i++) codes.push(await attempt());
      expect(codes).toEqual([101, 101, 101, 101, 101, 503, 503]);
      expect(t.app.metrics.webSocketRefused.get()).toBe(2);
      for (const ws of open) ws.terminate();
      await eventually(async () => (await attempt()) === 101, 10_000, 'a slot free again');

      // a real MQTT over WebSocket client: once CONNACKed it no longer counts as pending
      const c = await mqtt.connectAsync(wsUrl, { protocolVersion: 4 });
      await c.publishAsync(TOPIC, reading(1), { qos: 1 });
      const more: number[] = [];
      for (let i = 0; i < 4; i++) more.push(await attempt());
      expect(more).toEqual([101, 101, 101, 101]);
      await c.endAsync();
    } finally {
      for (const ws of open) ws.terminate();
      await t.stop();
    }
  });
});
