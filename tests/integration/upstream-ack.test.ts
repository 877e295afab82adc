import { createServer, type Server, type Socket } from 'node:net';
import mqttPacket, { type Packet } from 'mqtt-packet';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { InboundPublish } from '../../src/broker/ingress.js';
import { UpstreamConnection } from '../../src/upstream/connection.js';
import { eventually } from '../helpers/services.js';

// The acknowledgement rule of the upstream input (contract sections 7 and 15),
// seen from the broker's side of the socket: a scripted broker (mqtt-packet on
// a loopback TCP server) sends QoS 1 PUBLISHes to a real UpstreamConnection
// (MQTT.js 5) whose ingress settles when the test says, i.e. when "the log's
// fsync" happens. PUBACKs must come only after that, in arrival order
// (MQTT-4.6.0-2), many in flight at once, never with an error reason code.

interface FakeBroker {
  port: number;
  /** every packet the client sent, per connection, in order */
  sessions: Packet[][];
  sockets: Socket[];
  publish(n: number, first?: number): void;
  close(): Promise<void>;
}

async function fakeBroker(protocolVersion: 4 | 5): Promise<FakeBroker> {
  const sessions: Packet[][] = [];
  const sockets: Socket[] = [];
  const opts = { protocolVersion };
  const server: Server = createServer((socket) => {
    const received: Packet[] = [];
    sessions.push(received);
    sockets.push(socket);
    const parser = mqttPacket.parser(opts);
    parser.on('packet', (p) => {
      received.push(p);
      if (p.cmd === 'connect')
        socket.write(
          mqttPacket.generate({ cmd: 'connack', returnCode: 0, reasonCode: 0, sessionPresent: false }, opts),
        );
      if (p.cmd === 'subscribe')
        socket.write(
          mqttPacket.generate(
            { cmd: 'suback', messageId: p.messageId, granted: p.subscriptions.map(() => 1) },
            opts,
          ),
        );
    });
    socket.on('data', (d) => parser.parse(d));
    socket.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    sessions,
    sockets,
    publish(n, first = 1) {
      const socket = sockets.at(-1)!;
      for (let id = first; id < first + n; id++)
        socket.write(
          mqttPacket.generate(
            {
              cmd: 'publish',
              topic: `sensors/building_001/1/101/power`,
              payload: Buffer.from(String(id)),
              qos: 1,
              messageId: id,
              retain: false,
              dup: false,
            },
            opts,
          ),
        );
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** an ingress whose acknowledgement waits for the test: resolve(i) is "record i is fsync'd" */
function gatedIngress() {
  const calls: Array<{ msg: InboundPublish; clientId: string | null; settle: (err?: Error) => void }> = [];
  return {
    calls,
    receive(msg: InboundPublish, clientId: string | null): Promise<unknown> {
      return new Promise((resolve, reject) => {
        calls.push({ msg, clientId, settle: (err) => (err ? reject(err) : resolve(undefined)) });
      });
    },
  };
}

const opened: Array<{ stop(deadline: number): Promise<void> }> = [];
const brokers: FakeBroker[] = [];
afterEach(async () => {
  for (const c of opened.splice(0)) await c.stop(Date.now() + 500);
  for (const b of brokers.splice(0)) await b.close();
});

function connection(
  port: number,
  protocolVersion: 4 | 5,
  ingress: ReturnType<typeof gatedIngress>,
  maxInflight = 100,
) {
  const c = new UpstreamConnection({
    index: 0,
    url: `mqtt://127.0.0.1:${port}`,
    clientId: 'ei-test',
    topics: ['sensors/#'],
    shareGroup: 'energy-ingest',
    protocolVersion,
    maxInflight,
    sessionExpirySeconds: 3600,
    reconnectMinMs: 20,
    reconnectMaxMs: 50,
    ingress,
    log: pino({ level: 'silent' }),
  });
  opened.push(c);
  return c;
}

const pubacks = (packets: Packet[]) =>
  packets.filter((p) => p.cmd === 'puback') as Array<{ messageId: number; reasonCode?: number }>;
const settle = () => new Promise((r) => setTimeout(r, 150));

describe.each([4, 5] as const)('upstream acknowledgements, MQTT %s', (protocolVersion) => {
  it('session: clean off, QoS 1 subscription in the share group (MQTT 5: session expiry, receive maximum)', async () => {
    const broker = await fakeBroker(protocolVersion);
    brokers.push(broker);
    const c = connection(broker.port, protocolVersion, gatedIngress(), 64);
    await eventually(async () => c.subscribed, 5000, 'subscribed');
    const [connect, subscribe] = broker.sessions[0]! as [
      mqttPacket.IConnectPacket,
      mqttPacket.ISubscribePacket,
    ];
    expect(connect).toMatchObject({ cmd: 'connect', clean: false, clientId: 'ei-test', protocolVersion });
    if (protocolVersion === 5)
      expect(connect.properties).toMatchObject({ sessionExpiryInterval: 3600, receiveMaximum: 64 });
    expect(subscribe.subscriptions).toEqual([
      expect.objectContaining({ topic: '$share/energy-ingest/sensors/#', qos: 1 }),
    ]);
  });

  it('PUBACKs only after the durable append, in arrival order, with many in flight', async () => {
    const broker = await fakeBroker(protocolVersion);
    brokers.push(broker);
    const ingress = gatedIngress();
    const c = connection(broker.port, protocolVersion, ingress);
    await eventually(async () => c.subscribed, 5000, 'subscribed');
    broker.publish(10);
    // all ten reach the ingress without any acknowledgement: pipelined, not one per fsync
    await eventually(async () => ingress.calls.length === 10, 5000, 'ten in flight');
    expect(ingress.calls[0]!.clientId).toBe('upstream:ei-test');
    expect(c.inflight).toBe(10);
    await settle();
    expect(pubacks(broker.sessions[0]!)).toEqual([]);
    // durable out of order: 10 … 2 first; the first is still pending, so nothing may be acknowledged
    for (let i = 9; i >= 1; i--) ingress.calls[i]!.settle();
    await settle();
    expect(pubacks(broker.sessions[0]!)).toEqual([]);
    ingress.calls[0]!.settle();
    await eventually(async () => pubacks(broker.sessions[0]!).length === 10, 5000, 'ten PUBACKs');
    const acks = pubacks(broker.sessions[0]!);
    expect(acks.map((a) => a.messageId)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    for (const a of acks) expect(a.reasonCode ?? 0).toBe(0);
    expect(c.inflight).toBe(0);
  });

  it('at upstream.maxInflight unacknowledged messages the connection is not read further', async () => {
    const broker = await fakeBroker(protocolVersion);
    brokers.push(broker);
    const ingress = gatedIngress();
    const c = connection(broker.port, protocolVersion, ingress, 3);
    await eventually(async () => c.subscribed, 5000, 'subscribed');
    broker.publish(6);
    await eventually(async () => ingress.calls.length === 3, 5000, 'three taken');
    await settle();
    expect(ingress.calls).toHaveLength(3);
    ingress.calls[0]!.settle();
    await eventually(async () => ingress.calls.length === 4, 5000, 'one more after one PUBACK');
    expect(pubacks(broker.sessions[0]!).map((a) => a.messageId)).toEqual([1]);
    for (const call of ingress.calls.slice(1)) call.settle();
    await eventually(async () => ingress.calls.length === 6, 5000, 'the rest');
    for (const call of ingress.calls.slice(4)) call.settle();
    await eventually(async () => pubacks(broker.sessions[0]!).length === 6, 5000, 'six PUBACKs');
  });

  it('a message that cannot be recorded is never acknowledged (no error reason code): the connection is dropped and made again', async () => {
    const broker = await fakeBroker(protocolVersion);
    brokers.push(broker);
    const ingress = gatedIngress();
    const c = connection(broker.port, protocolVersion, ingress);
    await eventually(async () => c.subscribed, 5000, 'subscribed');
    broker.publish(3);
    await eventually(async () => ingress.calls.length === 3, 5000, 'three in flight');
    ingress.calls[0]!.settle();
    ingress.calls[1]!.settle(new Error('disk on fire'));
    ingress.calls[2]!.settle();
    // a new connection: the broker will send 2 and 3 again
    await eventually(async () => broker.sessions.length === 2 && c.subscribed, 5000, 'reconnected');
    const acks = pubacks(broker.sessions[0]!);
    expect(acks.map((a) => a.messageId)).toEqual([1]);
    expect(pubacks(broker.sessions[1]!)).toEqual([]);
    expect(c.failures).toBe(1);
  });
});
