import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { startApp, type TestApp } from '../helpers/app.js';
import { eventually } from '../helpers/services.js';

// Defects found reviewing issue 11/12's bounds, each with the test that failed before its fix:
// - a WebSocket client had no address (Aedes's conn is the stream over the socket), so every
//   WebSocket client shared one connect-rate and login-limit bucket apart from its real address;
// - SUBSCRIBEs of many persistent sessions in one moment could all pass mqtt.maxPersistentSessions
//   (the check awaited the store, which Aedes updates only after the answer); with the in-memory
//   store the awaits settle between two sockets' reads, so this test is a guard (it passed before);
// - every disconnected persistent session was tracked for a day, whatever their number.

let t: TestApp | undefined;
const clients: MqttClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) await c.endAsync(true);
  await t?.stop();
  t = undefined;
});

function connack(url: string, opts: mqtt.IClientOptions = {}): Promise<number> {
  return new Promise((resolve) => {
    const c = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000, ...opts });
    c.on('connect', (p) => {
      clients.push(c);
      resolve(p.returnCode ?? 0);
    });
    c.on('error', (err) => {
      c.end(true);
      resolve((err as { code?: number }).code ?? -1);
    });
  });
}

describe('session and address limits', () => {
  it('a WebSocket client counts against its own address (connect rate shared with TCP from 127.0.0.1)', async () => {
    t = await startApp({ EI_MQTT_CONNECT_RATE_PER_IP: '3' });
    const ws = `ws://127.0.0.1:${t.app.httpPort}/mqtt`;
    for (let i = 0; i < 3; i++) expect(await connack(t.mqttUrl, { clientId: `tcp-${i}` })).toBe(0);
    // the fourth connection from 127.0.0.1 in the window, over WebSocket this time
    expect(await connack(ws, { clientId: 'ws-0' })).toBe(3);
  });

  it('mqtt.maxPersistentSessions holds when many sessions subscribe at the same moment', async () => {
    t = await startApp({ EI_MQTT_MAX_PERSISTENT_SESSIONS: '2' });
    const url = t.mqttUrl;
    const sessions = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, clean: false, clientId: `p-${i}` }),
      ),
    );
    clients.push(...sessions);
    // MQTT.js rejects a subscription answered 0x80
    const answers = await Promise.allSettled(sessions.map((c) => c.subscribeAsync('race/#', { qos: 1 })));
    expect(answers.filter((a) => a.status === 'fulfilled' && a.value[0]?.qos === 1).length).toBe(2);
    expect(answers.filter((a) => a.status === 'rejected').length).toBe(6);
  });

  it('mqtt.maxIdleSessions: a login looping fresh persistent client ids leaves a bounded number behind', async () => {
    t = await startApp({ EI_MQTT_MAX_IDLE_SESSIONS: '5' });
    for (let i = 0; i < 15; i++) {
      const c = await mqtt.connectAsync(t.mqttUrl, {
        protocolVersion: 4,
        reconnectPeriod: 0,
        clean: false,
        clientId: `loop-${i}`,
      });
      await c.subscribeAsync('loop/#', { qos: 1 }); // a session worth resuming
      await c.endAsync();
    }
    const app = t.app;
    await eventually(async () => app.metrics.sessionsExpired.get() === 10, 5000, '10 sessions expired');
    // the newest five are still there: one of them resumes its session
    const back = await new Promise<boolean>((resolve) => {
      const c = mqtt.connect(t!.mqttUrl, {
        protocolVersion: 4,
        reconnectPeriod: 0,
        clean: false,
        clientId: 'loop-14',
      });
      c.on('connect', (p) => {
        clients.push(c);
        resolve(p.sessionPresent);
      });
    });
    expect(back).toBe(true);
  });
});
