import { createRequire } from 'node:module';
import { Readable } from 'node:stream';

// Aedes keeps persistent sessions and retained messages in its memory
// persistence (aedes-persistence) without any limit: every QoS 1/2 publish
// is queued for every persistent session subscribed to it until that session
// acknowledges it (offline: forever), and every retained message is kept
// forever. This wraps the memory persistence Aedes would create anyway and
// bounds both (issue 11, items 5 and 6).
//
// Outgoing queues are kept here instead of in aedes-persistence, whose queue is
// private: the same data structure and semantics (array per client, in
// enqueue order, matched by message id), plus a count and byte budget per
// session that drops the oldest. The queue holds the persistent session's
// in-flight messages too, so the budget also bounds what a connected but slow
// QoS 1 subscriber with a persistent session can pile up.

const require = createRequire(import.meta.url);
/** Aedes's own packet copy (the memory persistence stores the same). */
const AedesPacket = require('aedes-packet') as new (p: object) => StoredPacket;
/** The memory persistence Aedes creates when given none (its types do not match its CommonJS export). */
const memoryPersistence = require('aedes-persistence') as () => MemoryPersistence;

interface StoredPacket {
  cmd?: string;
  topic: string;
  payload?: Buffer | string;
  messageId?: number;
  brokerId?: string;
  brokerCounter?: number;
}

interface Queue {
  items: StoredPacket[];
  bytes: number;
}

export interface PersistenceBounds {
  readonly maxMessagesPerSession: number;
  readonly maxBytesPerSession: number;
  readonly maxRetainedMessages: number;
  readonly maxRetainedBytes: number;
  /** retained payloads outside sensors/ */
  readonly maxRetainedPayloadBytes: number;
  /** retained payloads on sensors/ (mqtt.maxPayloadBytes: a larger one is not even a valid reading) */
  readonly maxSensorPayloadBytes: number;
  onOfflineDropped(count: number): void;
  onRetainedRefused(reason: 'too_large' | 'count' | 'bytes', topic: string): void;
}

/** The persistence methods this module calls or replaces (Aedes calls them promise-style). */
interface MemoryPersistence {
  storeRetained(packet: StoredPacket): Promise<void>;
  cleanSubscriptions(client: { id: string }): Promise<unknown>;
  cleanIncoming?(client: { id: string }): Promise<unknown>;
  subscriptionsByClient(client: { id: string }): Promise<unknown[]>;
  countOffline(): Promise<{ clientsCount: number }>;
  delWill(client: { id: string }): Promise<unknown>;
  [method: string]: unknown;
}

function sizeOf(p: StoredPacket): number {
  const payload = p.payload;
  const n =
    payload === undefined ? 0 : typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  return n + Buffer.byteLength(p.topic ?? '');
}

/** Topics only the daemon publishes to (the ACL refuses every client): its retained alert state. */
function isDaemonTopic(topic: string): boolean {
  return topic === 'alerts' || topic.startsWith('alerts/');
}

export class BoundedPersistence {
  /** what to pass to Aedes as `persistence` */
  readonly persistence: MemoryPersistence;
  private readonly outgoing = new Map<string, Queue>();
  /** retained topics this module accounts for (everything but the daemon's own alerts) → bytes */
  private readonly retained = new Map<string, number>();
  private retainedBytesTotal = 0;

  constructor(private readonly b: PersistenceBounds) {
    const p = memoryPersistence();
    const storeRetained = p.storeRetained.bind(p);
    p.storeRetained = (packet) => this.storeRetained(storeRetained, packet);
    p.outgoingEnqueue = async (sub: { clientId: string }, packet: StoredPacket) => {
      this.enqueue(sub.clientId, packet);
    };
    p.outgoingEnqueueCombi = async (subs: Array<{ clientId: string }>, packet: StoredPacket) => {
      for (const sub of subs) this.enqueue(sub.clientId, packet);
    };
    p.outgoingUpdate = async (client: { id: string }, packet: StoredPacket) => this.update(client.id, packet);
    p.outgoingClearMessageId = async (client: { id: string }, packet: StoredPacket) =>
      this.clear(client.id, packet);
    p.outgoingStream = (client: { id: string }) =>
      // a copy, as in aedes-persistence: the queue may change while the stream is read
      Readable.from([...(this.outgoing.get(client.id)?.items ?? [])]);
    this.persistence = p;
  }

  get retainedMessages(): number {
    return this.retained.size;
  }

  get retainedBytes(): number {
    return this.retainedBytesTotal;
  }

  /** messages queued for persistent sessions, all sessions together */
  get queuedMessages(): number {
    let n = 0;
    for (const q of this.outgoing.values()) n += q.items.length;
    return n;
  }

  /**
   * May this persistent session store (more) subscriptions? Yes when it holds
   * some already, or fewer than `max` sessions hold any.
   */
  /**
   * Room for one more persistent session holding subscriptions? `reserved`: sessions approved
   * whose subscriptions may not be stored yet (counted unless the store already has them).
   */
  async roomForSession(
    clientId: string,
    max: number,
    reserved: ReadonlySet<string> = new Set(),
  ): Promise<boolean> {
    const p = this.persistence;
    if ((await p.subscriptionsByClient({ id: clientId })).length > 0) return true;
    let taken = (await p.countOffline()).clientsCount;
    for (const id of reserved) {
      if (id !== clientId && (await p.subscriptionsByClient({ id })).length === 0) taken++;
    }
    return taken < max;
  }

  /** Does this persistent session hold anything another login could take: subscriptions or queued messages? */
  async holdsSession(clientId: string): Promise<boolean> {
    if ((this.outgoing.get(clientId)?.items.length ?? 0) > 0) return true;
    return (await this.persistence.subscriptionsByClient({ id: clientId })).length > 0;
  }

  /** Forget a persistent session: its subscriptions, queue, inbound QoS 2 state and will. */
  async expire(clientId: string): Promise<void> {
    const p = this.persistence;
    const who = { id: clientId };
    this.outgoing.delete(clientId);
    await p.cleanSubscriptions(who);
    await p.cleanIncoming?.(who);
    await p.delWill(who);
  }

  private enqueue(clientId: string, packet: StoredPacket): void {
    const size = sizeOf(packet);
    const { maxMessagesPerSession, maxBytesPerSession } = this.b;
    if (size > maxBytesPerSession) {
      this.b.onOfflineDropped(1);
      return;
    }
    let q = this.outgoing.get(clientId);
    if (!q) {
      q = { items: [], bytes: 0 };
      this.outgoing.set(clientId, q);
    }
    let dropped = 0;
    while (
      q.items.length > 0 &&
      (q.items.length >= maxMessagesPerSession || q.bytes + size > maxBytesPerSession)
    ) {
      q.bytes -= sizeOf(q.items.shift()!);
      dropped++;
    }
    if (dropped) this.b.onOfflineDropped(dropped);
    q.items.push(new AedesPacket(packet));
    q.bytes += size;
  }

  /** aedes-persistence's outgoingUpdate, except that a packet dropped from the queue is no error. */
  private update(clientId: string, packet: StoredPacket): void {
    const q = this.outgoing.get(clientId);
    if (!q) return;
    const items = q.items;
    for (let i = 0; i < items.length; i++) {
      const temp = items[i]!;
      if (temp.brokerId === packet.brokerId) {
        if (temp.brokerCounter === packet.brokerCounter) {
          temp.messageId = packet.messageId;
          return;
        }
        // same broker, another counter: a message id can be reused after 65535, keep looking
      } else if (temp.messageId === packet.messageId) {
        // QoS 2: the PUBREL takes the PUBLISH's place
        q.bytes += sizeOf(packet) - sizeOf(temp);
        items[i] = packet;
        return;
      }
    }
    // Dropped by the budget while it was being delivered: the delivery goes on
    // without a stored copy. (aedes-persistence throws here, which would make
    // Aedes disconnect the client.)
  }

  private clear(clientId: string, packet: StoredPacket): StoredPacket | undefined {
    const q = this.outgoing.get(clientId);
    if (!q) return undefined;
    const i = q.items.findIndex((p) => p.messageId === packet.messageId);
    if (i < 0) return undefined;
    const [temp] = q.items.splice(i, 1);
    q.bytes -= sizeOf(temp!);
    if (q.items.length === 0) this.outgoing.delete(clientId);
    return temp;
  }

  private async storeRetained(
    store: (p: StoredPacket) => Promise<void>,
    packet: StoredPacket,
  ): Promise<void> {
    const topic = packet.topic;
    // The daemon's alert state is bounded where it is made (active alerts) and is never refused here.
    if (isDaemonTopic(topic)) return store(packet);
    const size = sizeOf(packet);
    const old = this.retained.get(topic);
    const payloadBytes = size - Buffer.byteLength(topic);
    const forget = () => {
      if (old === undefined) return;
      this.retained.delete(topic);
      this.retainedBytesTotal -= old;
    };
    if (payloadBytes === 0) {
      forget();
      return store(packet);
    }
    const cap = topic.startsWith('sensors/') ? this.b.maxSensorPayloadBytes : this.b.maxRetainedPayloadBytes;
    const reason =
      payloadBytes > cap
        ? 'too_large'
        : old === undefined && this.retained.size >= this.b.maxRetainedMessages
          ? 'count'
          : this.retainedBytesTotal - (old ?? 0) + size > this.b.maxRetainedBytes
            ? 'bytes'
            : undefined;
    if (reason) {
      this.b.onRetainedRefused(reason, topic);
      if (old === undefined) return;
      // The refused message is newer than the one stored: keeping the older
      // one would hand new subscribers a value that has been replaced.
      forget();
      return store({ ...packet, payload: Buffer.alloc(0) });
    }
    forget();
    this.retained.set(topic, size);
    this.retainedBytesTotal += size;
    return store(packet);
  }
}
