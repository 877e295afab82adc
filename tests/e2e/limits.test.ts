import mqtt from 'mqtt';
import { describe, expect, it } from 'vitest';
import { startApp } from '../helpers/app.js';
import { connectPacket, rawSession } from '../helpers/rawMqtt.js';

// Limits a hostile or broken client cannot get past (each refusal counted by reason).

describe('connection and subscription limits', () => {
  it('refuses connections beyond mqtt.maxConnections with CONNACK 0x03', async () => {
    const t = await startApp({ EI_MQTT_MAX_CONNECTIONS: '2' });
    try {
      const a = await mqtt.connectAsync(t.mqttUrl, { protocolVersion: 4 });
      const b = await mqtt.connectAsync(t.mqttUrl, { protocolVersion: 4 });
      const r = await rawSession(t.app.mqttPort, [connectPacket('third')]);
      expect(r.packets[0]).toMatchObject({ cmd: 'connack', returnCode: 3 });
      expect(r.closed).toBe(true);
      expect(t.app.metrics.authRefused.get({ reason: 'too_many_connections' })).toBe(1);
      await a.endAsync();
      await b.endAsync();
    } finally {
      await t.stop();
    }
  });

  it('refuses a burst of connections from one address beyond mqtt.connectRatePerIp', async () => {
    const t = await startApp({ EI_MQTT_CONNECT_RATE_PER_IP: '5' });
    try {
      const codes: number[] = [];
      for (let i = 0; i < 7; i++) {
        const r = await rawSession(t.app.mqttPort, [connectPacket(`burst-${i}`)], 200);
        codes.push((r.packets[0] as { returnCode: number }).returnCode);
      }
      expect(codes).toEqual([0, 0, 0, 0, 0, 3, 3]);
      expect(t.app.metrics.authRefused.get({ reason: 'connect_rate' })).toBe(2);
    } finally {
      await t.stop();
    }
  });

  it('refuses overlong client ids (0x02), caps subscriptions per client (0x80) and topic depth (disconnect)', async () => {
    const t = await startApp({ EI_MQTT_MAX_SUBSCRIPTIONS_PER_CLIENT: '2' });
    try {
      const long = await rawSession(t.app.mqttPort, [connectPacket('x'.repeat(300))]);
      expect(long.packets[0]).toMatchObject({ cmd: 'connack', returnCode: 2 });
      const subs = await rawSession(t.app.mqttPort, [
        connectPacket('subber'),
        {
          cmd: 'subscribe',
          messageId: 1,
          subscriptions: [
            { topic: 'a', qos: 0 },
            { topic: 'b', qos: 0 },
            { topic: 'c', qos: 0 },
          ],
        },
      ]);
      expect(subs.packets[1]).toMatchObject({ cmd: 'suback', granted: [0, 0, 128] });
      const deep = await rawSession(t.app.mqttPort, [
        connectPacket('deep'),
        {
          cmd: 'publish',
          topic: Array.from({ length: 17 }, (_, i) => `l${i}`).join('/'),
          payload: 'x',
          qos: 0,
          retain: false,
          dup: false,
        },
      ]);
      expect(deep.closed).toBe(true);
      const metrics = await (await fetch(`${t.httpUrl}/metrics`)).text();
      expect(metrics).toMatch(/energy_ingest_auth_refused_total\{reason="client_id_too_long"\} 1/);
      expect(metrics).toMatch(/energy_ingest_auth_refused_total\{reason="too_many_subscriptions"\} 1/);
    } finally {
      await t.stop();
    }
  });
});

describe('per-client message rate', () => {
  it('slows a client above mqtt.maxMessagesPerSecond down instead of dropping anything', async () => {
    const t = await startApp({ EI_MQTT_MAX_MESSAGES_PER_SECOND: '50' });
    try {
      const c = await mqtt.connectAsync(t.mqttUrl, { protocolVersion: 4 });
      const t0 = Date.now();
      const now = Date.now();
      await Promise.all(
        Array.from({ length: 150 }, (_, i) =>
          c.publishAsync(
            `sensors/building_001/1/fast/power`,
            JSON.stringify({ value: i, timestamp: now - 1000 + i }),
            { qos: 1 },
          ),
        ),
      );
      const took = Date.now() - t0;
      await c.endAsync();
      // 50 at once (the burst), then 50 per second: about 2 s for the other 100
      expect(took).toBeGreaterThanOrEqual(1500);
      expect(t.app.metrics.throttled.get()).toBeGreaterThan(50);
      await new Promise((r) => setTimeout(r, 300));
      expect(t.app.metrics.pointsWritten.get()).toBe(150);
    } finally {
      await t.stop();
    }
  });
});

describe('packet size', () => {
  it('closes a connection whose packet exceeds mqtt.maxPacketBytes, before it is read whole; others carry on', async () => {
    const t = await startApp({ EI_MQTT_MAX_PACKET_BYTES: '256KiB' });
    try {
      const { default: mqttPacket } = await import('mqtt-packet');
      // a PUBLISH whose header announces 10 MB; only its first 2 MB are ever sent
      const huge = mqttPacket.generate({
        cmd: 'publish',
        topic: 'sensors/1/1/r/t',
        payload: Buffer.alloc(10 * 1024 * 1024, 0x31),
        qos: 0,
        retain: false,
        dup: false,
      });
      const r = await rawSession(
        t.app.mqttPort,
        [connectPacket('huge'), huge.subarray(0, 2 * 1024 * 1024)],
        3000,
      );
      expect(r.closed).toBe(true);
      expect(t.app.metrics.authRefused.get({ reason: 'packet_too_large' })).toBe(1);
      // a payload over maxPayloadBytes but under the packet cap is still acknowledged and dead-lettered
      const c = await mqtt.connectAsync(t.mqttUrl, { protocolVersion: 4 });
      await c.publishAsync('sensors/building_001/1/r/power', Buffer.alloc(100 * 1024, 0x31), { qos: 1 });
      await c.endAsync();
      expect(t.app.metrics.messagesRejected.get({ reason: 'payload_too_large' })).toBe(1);
    } finally {
      await t.stop();
    }
  });
});
