import { createServer, type Server } from 'node:net';
import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { keepReorderedDeliveries } from '../../src/broker/conformance.js';
import { eventually } from '../helpers/services.js';

// The Aedes dedupe correction (src/broker/conformance.ts) against a real
// Aedes and a real MQTT.js subscriber: a retained publish overtaken by a later
// one must still arrive; overlapping subscriptions still get one copy.

let server: Server | undefined;
let broker: Aedes | undefined;
afterEach(async () => {
  await new Promise<void>((r) => (broker ? broker.close(() => r()) : r()));
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
});

async function start(fix: boolean): Promise<number> {
  const aedes = await Aedes.createBroker();
  broker = aedes;
  server = createServer((socket) => {
    const client = aedes.handle(socket);
    if (fix) expect(keepReorderedDeliveries(client)).toBe(true);
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
  return (server.address() as { port: number }).port;
}

/** 200 pairs: a retained publish, then at once a plain one that overtakes it */
async function burst(port: number): Promise<number> {
  const sub = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4 });
  let got = 0;
  sub.on('message', () => got++);
  await sub.subscribeAsync('alerts/#', { qos: 1 });
  for (let i = 0; i < 200; i++) {
    const p = (topic: string, retain: boolean) =>
      broker!.publish(
        { cmd: 'publish', topic, payload: Buffer.from('x'), qos: 1, retain, dup: false } as never,
        () => {},
      );
    p(`alerts/r/${i}`, true);
    p(`alerts/p/${i}`, false);
  }
  await eventually(async () => got >= 400, 1500, '400 messages').catch(() => {});
  await new Promise((r) => setTimeout(r, 200));
  await sub.endAsync();
  return got;
}

describe('Aedes dedupe correction', () => {
  it('unpatched Aedes drops retained publishes that a later publish overtakes (the bug this corrects)', async () => {
    expect(await burst(await start(false))).toBeLessThan(400);
  });

  it('with the correction every message arrives', async () => {
    expect(await burst(await start(true))).toBe(400);
  });

  it('overlapping subscriptions still deliver one copy', async () => {
    const port = await start(true);
    const sub = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4 });
    const got: string[] = [];
    sub.on('message', (t) => got.push(t));
    await sub.subscribeAsync(['alerts/#', 'alerts/a/+'], { qos: 1 });
    const pub = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4 });
    for (let i = 0; i < 20; i++) await pub.publishAsync('alerts/a/b', String(i), { qos: 1 });
    await eventually(async () => got.length >= 20, 3000, '20 messages');
    await new Promise((r) => setTimeout(r, 300));
    expect(got).toHaveLength(20);
    await pub.endAsync();
    await sub.endAsync();
  });
});
