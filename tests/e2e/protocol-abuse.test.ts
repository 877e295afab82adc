import { connect } from 'node:net';
import mqtt from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { startApp } from '../helpers/app.js';
import { connectPacket, rawSession } from '../helpers/rawMqtt.js';

// Regression guards for issue 12 (what held up): hostile CONNECTs and bytes
// after a CONNECT are cut off while a well-behaved client beside them carries
// on. Random bytes are fuzzed in fuzz.test.ts, MQTT 5 CONNECT (CONNACK 0x01)
// in mqtt-conformance.test.ts, an oversized PUBLISH in limits.test.ts.

/** CONNECT, wait for CONNACK, then send `garbage`: the CONNACK's code and whether the broker closed the connection. */
function garbageAfterConnack(
  port: number,
  clientId: string,
  garbage: Buffer,
): Promise<{ connack: number; closed: boolean }> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    let connack = -1;
    const finish = (closed: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve({ connack, closed });
    };
    const timer = setTimeout(() => finish(false), 5000);
    parser.on('packet', (p) => {
      if (p.cmd !== 'connack') return;
      connack = p.returnCode ?? -1;
      s.write(garbage);
    });
    s.on('data', (d) => parser.parse(d));
    s.on('close', () => finish(true));
    s.on('error', () => finish(true));
    s.write(mqttPacket.generate(connectPacket(clientId)));
  });
}

describe('protocol abuse at the MQTT listener', () => {
  it('oversized CONNECTs and garbage after CONNECT close the connection; the daemon and other clients carry on', async () => {
    // packets up to 16 KiB (payloads up to 1 KiB): a CONNECT with 3 × 20 KB of strings is over it
    const t = await startApp({ EI_MQTT_MAX_PACKET_BYTES: '16384', EI_MQTT_MAX_PAYLOAD_BYTES: '1024' });
    const bystander = await mqtt.connectAsync(t.mqttUrl, { protocolVersion: 4, reconnectPeriod: 0 });
    let closed = false;
    bystander.on('close', () => {
      closed = true;
    });
    let acked = 0;
    let publishing = true;
    const flow = (async () => {
      while (publishing) {
        await bystander.publishAsync('sensors/building_001/1/abuse/temperature', '21', { qos: 1 });
        acked++;
      }
    })();
    try {
      const big = 'x'.repeat(20_000);
      const cases: Array<[string, Buffer[]]> = [
        [
          'huge user name, password and will',
          [
            mqttPacket.generate({
              ...(connectPacket('big') as mqttPacket.IConnectPacket),
              username: big,
              password: Buffer.from(big),
              will: { topic: 'w', payload: Buffer.from(big), qos: 0, retain: false },
            }),
          ],
        ],
        // a CONNECT announcing 100 MB, of which 64 KiB arrive
        [
          'CONNECT announcing 100 MB',
          [Buffer.concat([Buffer.from([0x10, 0x80, 0x80, 0x80, 0x30]), Buffer.alloc(65536, 0x41)])],
        ],
      ];
      for (const [what, bytes] of cases) {
        const before = t.app.metrics.authRefused.get({ reason: 'packet_too_large' });
        const r = await rawSession(t.app.mqttPort, bytes, 5000);
        expect(r.closed, what).toBe(true);
        expect(r.packets, what).toEqual([]); // never accepted
        expect(t.app.metrics.authRefused.get({ reason: 'packet_too_large' }), what).toBe(before + 1);
      }
      const garbage: Array<[string, Buffer]> = [
        ['reserved packet type 0', Buffer.from([0x00, 0x00])],
        ['reserved packet type 15', Buffer.from([0xf0, 0x00])],
        ['remaining length longer than 4 bytes', Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x7f])],
        ['SUBSCRIBE with reserved flags 0000', Buffer.from([0x80, 0x06, 0x00, 0x01, 0x00, 0x01, 0x61, 0x00])],
        ['text', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')],
      ];
      for (const [what, bytes] of garbage) {
        expect(await garbageAfterConnack(t.app.mqttPort, `garbage-${acked}`, bytes), what).toEqual({
          connack: 0,
          closed: true,
        });
      }
      // garbage instead of a CONNECT
      expect(
        (await rawSession(t.app.mqttPort, [Buffer.from('\u0016\u0003\u0001garbage')], 5000)).closed,
      ).toBe(true);
      const during = acked;
      await new Promise((r) => setTimeout(r, 300));
      expect(acked).toBeGreaterThan(during); // still flowing
      expect(closed).toBe(false);
      expect((await fetch(`${t.httpUrl}/health`)).status).toBe(200);
    } finally {
      publishing = false;
      await flow;
      await bystander.endAsync();
      await t.stop();
    }
  });
});
