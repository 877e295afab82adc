import type { Client, ConnectPacket } from 'aedes';
import type { Refusal } from './conformance.js';

// Limits a hostile or broken client cannot get past. Each refusal carries a
// reason that the broker counts in energy_ingest_auth_refused_total{reason}.

export interface LimitOptions {
  readonly maxConnections: number;
  /** new connections per source address per 10 s */
  readonly connectRatePerIp: number;
  readonly maxClientIdBytes: number;
  readonly maxSubscriptionsPerClient: number;
  /** publishes per second per client before its reads are slowed down */
  readonly maxMessagesPerSecond: number;
  readonly now?: () => number;
}

const WINDOW_MS = 10_000;

export class Limits {
  private readonly connects = new Map<string, { start: number; count: number }>();
  private readonly subscriptions = new WeakMap<Client, Set<string>>();
  private readonly buckets = new WeakMap<Client, { allowance: number; last: number }>();
  private readonly now: () => number;

  constructor(private readonly o: LimitOptions) {
    this.now = o.now ?? Date.now;
  }

  /** Admission at CONNECT: connection count, per-address rate, client id length. */
  admit(client: Client, packet: ConnectPacket, connected: number): Refusal | undefined {
    if (Buffer.byteLength(packet.clientId ?? '') > this.o.maxClientIdBytes) {
      return { returnCode: 2, reason: 'client_id_too_long' };
    }
    if (connected >= this.o.maxConnections) return { returnCode: 3, reason: 'too_many_connections' };
    const ip = (client as unknown as { conn?: { remoteAddress?: string } }).conn?.remoteAddress ?? 'unknown';
    const t = this.now();
    let w = this.connects.get(ip);
    if (!w || t - w.start >= WINDOW_MS) {
      // the map only ever holds addresses seen in the current window
      if (this.connects.size > 100_000) this.connects.clear();
      w = { start: t, count: 0 };
      this.connects.set(ip, w);
    }
    if (++w.count > this.o.connectRatePerIp) return { returnCode: 3, reason: 'connect_rate' };
    return undefined;
  }

  /**
   * Token bucket per client (a second's worth of burst). Returns how long this
   * publish must wait: the broker holds its acknowledgement that long, Aedes
   * stops reading the client meanwhile, and nothing is dropped.
   */
  throttleMs(client: Client): number {
    const rate = this.o.maxMessagesPerSecond;
    const t = this.now();
    let b = this.buckets.get(client);
    if (!b) {
      b = { allowance: rate, last: t };
      this.buckets.set(client, b);
    }
    b.allowance = Math.min(rate, b.allowance + ((t - b.last) / 1000) * rate) - 1;
    b.last = t;
    return b.allowance >= 0 ? 0 : (-b.allowance / rate) * 1000;
  }

  /** A new subscription filter for this client: false once it holds too many. */
  subscribe(client: Client, filter: string): boolean {
    let set = this.subscriptions.get(client);
    if (!set) {
      set = new Set();
      this.subscriptions.set(client, set);
    }
    if (set.has(filter)) return true;
    if (set.size >= this.o.maxSubscriptionsPerClient) return false;
    set.add(filter);
    return true;
  }
}
