import { readFileSync } from 'node:fs';
import type { Client, ConnectPacket } from 'aedes';
import { clientAddress } from './address.js';
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

/**
 * The soft RLIMIT_NOFILE of this process (Node has no API for it; Node itself
 * raises the soft limit to the hard one at start, so this is what we really
 * have). null where /proc is missing: no cap is applied then.
 */
export function fileDescriptorLimit(limitsText?: string): number | null {
  let text = limitsText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/limits', 'utf8');
    } catch {
      return null;
    }
  }
  const m = /^Max open files\s+(\S+)/m.exec(text);
  if (!m || m[1] === 'unlimited') return null;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) && n > 0 ? n : null;
}

export interface ConnectionCap {
  /** what admission enforces: min(configured, fd limit − reserve), at least 1 */
  readonly maxConnections: number;
  /** set when the fd limit lowered the configured value (the start warning says so) */
  readonly cappedFrom?: number;
  readonly fdLimit: number | null;
  /**
   * open MQTT sockets at most (undefined: no fd limit known): the fd limit
   * minus three quarters of the reserve, so a quarter of it is for sockets
   * still in CONNECT or being refused with 0x03, beyond the connection cap
   */
  readonly maxSockets?: number;
}

/**
 * Contract section 7: mqtt.maxConnections is capped by what the fd limit leaves
 * after `reserve` descriptors for the durable log, sinks, HTTP, pools and the
 * sockets still in CONNECT or being refused. Every connection holds one
 * descriptor; past the limit, accept() and the log's next segment would fail.
 */
export function capConnections(configured: number, fdLimit: number | null, reserve: number): ConnectionCap {
  if (fdLimit === null) return { maxConnections: configured, fdLimit };
  const room = Math.max(1, fdLimit - reserve);
  const maxSockets = Math.max(1, fdLimit - Math.ceil((reserve * 3) / 4));
  return room < configured
    ? { maxConnections: room, cappedFrom: configured, fdLimit, maxSockets }
    : { maxConnections: configured, fdLimit, maxSockets };
}

/**
 * Open MQTT sockets (TCP and TLS listeners together, counted from accept, so
 * connections still in CONNECT are included). Beyond `max` a new socket is
 * closed at once, before it can hold a descriptor for connectTimeoutMs: the
 * hard bound under the CONNACK 0x03 admission, which only sees CONNECTs.
 */
export class SocketBudget {
  private open = 0;
  constructor(readonly max: number) {}

  /** false: destroy the socket now. Otherwise release() when it closes. */
  take(): boolean {
    if (this.open >= this.max) return false;
    this.open++;
    return true;
  }

  release(): void {
    this.open--;
  }

  get size(): number {
    return this.open;
  }
}

export class Limits {
  private readonly connects = new Map<string, { start: number; count: number }>();
  private readonly subscriptions = new WeakMap<Client, Set<string>>();
  private readonly buckets = new WeakMap<Client, { allowance: number; last: number }>();
  private readonly now: () => number;

  constructor(private readonly o: LimitOptions) {
    this.now = o.now ?? Date.now;
  }

  /** the connection cap admission enforces */
  get maxConnections(): number {
    return this.o.maxConnections;
  }

  /**
   * Admission at CONNECT: connection count, per-address rate, client id length.
   * `rateCharged`: the connection's address was charged already (a TLS
   * connection is, at its TCP accept, before its handshake: tlsHandshakes.ts).
   */
  admit(client: Client, packet: ConnectPacket, connected: number, rateCharged = false): Refusal | undefined {
    if (Buffer.byteLength(packet.clientId ?? '') > this.o.maxClientIdBytes) {
      return { returnCode: 2, reason: 'client_id_too_long' };
    }
    if (connected >= this.o.maxConnections) return { returnCode: 3, reason: 'too_many_connections' };
    if (!rateCharged && !this.chargeConnect(clientAddress(client) ?? 'unknown')) {
      return { returnCode: 3, reason: 'connect_rate' };
    }
    return undefined;
  }

  /** One new connection from this address: false once it is over mqtt.connectRatePerIp in the current window. */
  chargeConnect(ip: string): boolean {
    const t = this.now();
    let w = this.connects.get(ip);
    if (!w || t - w.start >= WINDOW_MS) {
      // the map only ever holds addresses seen in the current window
      if (this.connects.size > 100_000) this.connects.clear();
      w = { start: t, count: 0 };
      this.connects.set(ip, w);
    }
    return ++w.count <= this.o.connectRatePerIp;
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
