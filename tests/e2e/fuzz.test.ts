import { connect } from 'node:net';
import fc from 'fast-check';
import mqtt from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { startApp } from '../helpers/app.js';

// Hostile bytes at the MQTT listener: the daemon stays up and keeps serving.

function send(port: number, chunks: Buffer[]): Promise<void> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    const done = () => {
      s.destroy();
      resolve();
    };
    s.on('error', done);
    s.on('close', done);
    s.on('connect', () => {
      for (const c of chunks) s.write(c);
      setTimeout(done, 50);
    });
  });
}

const connectBytes = mqttPacket.generate({
  cmd: 'connect',
  protocolId: 'MQTT',
  protocolVersion: 4,
  clean: true,
  clientId: 'fuzz',
  keepalive: 30,
});

describe('raw-socket fuzzing of the MQTT listener', () => {
  it('survives random bytes, malformed packets and mangled valid ones', async () => {
    const t = await startApp();
    try {
      const publish = mqttPacket.generate({
        cmd: 'publish',
        topic: 'sensors/1/1/r/t',
        payload: Buffer.from('{"value":1}'),
        qos: 1,
        messageId: 7,
        retain: false,
        dup: false,
      });
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            fc.uint8Array({ minLength: 1, maxLength: 300 }).map((b) => [Buffer.from(b)]),
            fc.uint8Array({ minLength: 1, maxLength: 300 }).map((b) => [connectBytes, Buffer.from(b)]),
            fc
              .tuple(fc.integer({ min: 0, max: publish.length - 1 }), fc.integer({ min: 0, max: 255 }))
              .map(([i, v]) => {
                const mangled = Buffer.from(publish);
                mangled[i] = v;
                return [connectBytes, mangled];
              }),
          ),
          async (chunks) => {
            await send(t.app.mqttPort, chunks);
          },
        ),
        { numRuns: 150 },
      );
      // still serving: health, and a well-behaved client's reading is stored
      expect((await fetch(`${t.httpUrl}/health`)).status).toBe(200);
      const before = t.app.metrics.pointsWritten.get();
      const c = await mqtt.connectAsync(t.mqttUrl, { protocolVersion: 4 });
      await c.publishAsync('sensors/building_001/1/after-fuzz/temperature', '21', { qos: 1 });
      await c.endAsync();
      await new Promise((r) => setTimeout(r, 300));
      expect(t.app.metrics.pointsWritten.get()).toBeGreaterThan(before);
    } finally {
      await t.stop();
    }
  });

  it('a slow client that never finishes its CONNECT is dropped at the connect timeout, not kept forever', async () => {
    const t = await startApp({ EI_MQTT_CONNECT_TIMEOUT_MS: '1500' });
    try {
      const s = connect(t.app.mqttPort, '127.0.0.1');
      await new Promise((r) => s.once('connect', r));
      s.write(connectBytes.subarray(0, 5)); // slowloris: half a CONNECT, then silence
      const closed = await Promise.race([
        new Promise<boolean>((r) => s.once('close', () => r(true))),
        new Promise<boolean>((r) => setTimeout(() => r(false), 10_000)),
      ]);
      s.destroy();
      expect(closed).toBe(true);
    } finally {
      await t.stop();
    }
  });
});
