import { describe, expect, it } from 'vitest';
import { BoundedPersistence, type PersistenceBounds } from '../../src/broker/persistence.js';

// The bounded wrapper around aedes-persistence's memory store, called the way
// Aedes calls it (promise style, packets shaped like aedes-packet's).

function make(over: Partial<PersistenceBounds> = {}) {
  const dropped: number[] = [];
  const refused: string[] = [];
  const store = new BoundedPersistence({
    maxMessagesPerSession: 3,
    maxBytesPerSession: 1000,
    maxRetainedMessages: 2,
    maxRetainedBytes: 500,
    maxRetainedPayloadBytes: 100,
    maxSensorPayloadBytes: 50,
    onOfflineDropped: (n) => dropped.push(n),
    onRetainedRefused: (reason) => refused.push(reason),
    ...over,
  });
  const p = store.persistence as unknown as Record<string, (...a: unknown[]) => Promise<unknown>> & {
    outgoingStream(c: { id: string }): AsyncIterable<{ payload: Buffer; messageId?: number; cmd: string }>;
    createRetainedStream(pattern: string): AsyncIterable<{ topic: string }>;
  };
  return { store, p, dropped, refused };
}

const pkt = (n: number, payload = `m${n}`) => ({
  cmd: 'publish',
  topic: 't',
  payload: Buffer.from(payload),
  qos: 1,
  brokerId: 'b',
  brokerCounter: n,
});

async function collect<T>(s: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of s) out.push(x);
  return out;
}

describe('persistent session queues', () => {
  it('keep the newest mqtt.maxOfflineMessagesPerSession, dropping and counting the oldest', async () => {
    const { p, store, dropped } = make();
    for (let i = 1; i <= 5; i++)
      await p.outgoingEnqueueCombi!([{ clientId: 'a' }, { clientId: 'b' }], pkt(i));
    const a = await collect(p.outgoingStream({ id: 'a' }));
    expect(a.map((x) => x.payload.toString())).toEqual(['m3', 'm4', 'm5']);
    expect(dropped.reduce((x, y) => x + y, 0)).toBe(4);
    expect(store.queuedMessages).toBe(6);
  });

  it('keep within the byte budget; a message larger than the budget is dropped alone', async () => {
    const { p, dropped } = make({ maxMessagesPerSession: 100, maxBytesPerSession: 25 });
    await p.outgoingEnqueue!({ clientId: 'a' }, pkt(1, 'x'.repeat(10))); // 11 bytes with the topic
    await p.outgoingEnqueue!({ clientId: 'a' }, pkt(2, 'y'.repeat(10)));
    await p.outgoingEnqueue!({ clientId: 'a' }, pkt(3, 'z'.repeat(10))); // 33 > 25: the oldest goes
    expect((await collect(p.outgoingStream({ id: 'a' }))).map((x) => x.payload.toString()[0])).toEqual([
      'y',
      'z',
    ]);
    await p.outgoingEnqueue!({ clientId: 'a' }, pkt(4, 'w'.repeat(40)));
    expect((await collect(p.outgoingStream({ id: 'a' }))).length).toBe(2);
    expect(dropped).toEqual([1, 1]);
  });

  it('match updates and acknowledgements by message id, as aedes-persistence does; a dropped packet is no error', async () => {
    const { p, store } = make();
    await p.outgoingEnqueue!({ clientId: 'a' }, pkt(1));
    await p.outgoingEnqueue!({ clientId: 'a' }, pkt(2));
    await p.outgoingUpdate!({ id: 'a' }, { ...pkt(1), messageId: 11 });
    await p.outgoingUpdate!({ id: 'a' }, { ...pkt(2), messageId: 12 });
    // QoS 2: the PUBREL replaces the PUBLISH with the same message id
    await p.outgoingUpdate!({ id: 'a' }, { cmd: 'pubrel', topic: '', messageId: 12, brokerId: 'other' });
    expect((await collect(p.outgoingStream({ id: 'a' }))).map((x) => x.cmd)).toEqual(['publish', 'pubrel']);
    expect(
      ((await p.outgoingClearMessageId!({ id: 'a' }, { messageId: 11 })) as { messageId: number }).messageId,
    ).toBe(11);
    await expect(p.outgoingUpdate!({ id: 'a' }, { ...pkt(9), messageId: 99 })).resolves.toBeUndefined();
    expect(await p.outgoingClearMessageId!({ id: 'a' }, { messageId: 99 })).toBeUndefined();
    await p.outgoingClearMessageId!({ id: 'a' }, { messageId: 12 });
    expect(store.queuedMessages).toBe(0);
  });

  it('expire() forgets the subscriptions and the queue', async () => {
    const { p, store } = make();
    await p.addSubscriptions!({ id: 'a' }, [{ topic: 'sensors/#', qos: 1 }]);
    await p.outgoingEnqueue!({ clientId: 'a' }, pkt(1));
    expect(await store.roomForSession('new', 1)).toBe(false);
    expect(await store.roomForSession('a', 1)).toBe(true);
    await store.expire('a');
    expect(await p.subscriptionsByClient!({ id: 'a' })).toEqual([]);
    expect(store.queuedMessages).toBe(0);
    expect(await store.roomForSession('new', 1)).toBe(true);
  });
});

describe('retained messages', () => {
  const retained = async (p: ReturnType<typeof make>['p']) =>
    (await collect(p.createRetainedStream('#'))).map((x) => x.topic).sort();
  const put = (p: ReturnType<typeof make>['p'], topic: string, bytes: number) =>
    p.storeRetained!({ cmd: 'publish', topic, payload: Buffer.alloc(bytes, 0x31), qos: 0, retain: true });

  it('cap the payload (mqtt.maxPayloadBytes on sensors/), the count and the bytes; alerts are never refused', async () => {
    const { p, store, refused } = make();
    await put(p, 'sensors/x', 51);
    await put(p, 'other', 101);
    await put(p, 'a', 10);
    await put(p, 'b', 10);
    await put(p, 'c', 10); // third topic: count
    await put(p, 'a', 20); // replacing is no new topic
    for (let i = 0; i < 5; i++) await put(p, `alerts/building_001/r${i}`, 1000);
    expect(await retained(p)).toEqual([
      'a',
      'alerts/building_001/r0',
      'alerts/building_001/r1',
      'alerts/building_001/r2',
      'alerts/building_001/r3',
      'alerts/building_001/r4',
      'b',
    ]);
    expect(refused).toEqual(['too_large', 'too_large', 'count']);
    expect(store.retainedMessages).toBe(2);
    expect(store.retainedBytes).toBe(21 + 11);
  });

  it('a refused retain removes the older one of its topic; an empty payload removes and frees', async () => {
    const { p, store, refused } = make({ maxRetainedBytes: 60 });
    await put(p, 'a', 40);
    await put(p, 'b', 30); // 41 + 31 > 60
    await put(p, 'a', 101); // too large: the old 'a' must not outlive it
    expect(await retained(p)).toEqual([]);
    expect(refused).toEqual(['bytes', 'too_large']);
    await put(p, 'b', 30);
    await put(p, 'b', 0);
    expect(await retained(p)).toEqual([]);
    expect(store.retainedBytes).toBe(0);
  });
});
