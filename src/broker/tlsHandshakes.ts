import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { normalizeAddress } from './address.js';

// Issue 18 item 5. A TLS connection costs a descriptor and a handshake's CPU
// before any MQTT packet (and so before any CONNECT admission) is seen; Node
// keeps an unfinished handshake 120 s. This gate decides at the raw TCP accept,
// before the handshake spends anything, and bounds the handshake's duration.

export type HandshakeRefusal =
  | 'too_many_connections'
  | 'too_many_handshakes'
  | 'handshakes_per_address'
  | 'connect_rate';

export interface HandshakeGateOptions {
  /** handshakes in progress at most (all addresses) */
  readonly maxPending: number;
  /** handshakes in progress at most from one address */
  readonly maxPendingPerAddress: number;
  /** a handshake not finished this long after the TCP accept is closed (mqtt.connectTimeoutMs) */
  readonly timeoutMs: number;
  /** the connection cap (mqtt.maxConnections after the fd cap) */
  readonly maxConnections: number;
  /** connections counted against the cap now, handshakes excluded (connected + being admitted) */
  readonly connections: () => number;
  /** the per-address connect rate shared with plain MQTT: false when this address is over it */
  readonly chargeConnect: (address: string) => boolean;
  readonly onRefused: (reason: HandshakeRefusal, address: string) => void;
  readonly onTimeout: (address: string) => void;
}

interface Pending {
  readonly raw: Socket;
  readonly address: string;
  readonly timer: NodeJS.Timeout;
}

export class HandshakeGate {
  /** by remote address and port: unique among live connections, and known to both the raw and the TLS socket */
  private readonly pending = new Map<string, Pending>();
  private readonly perAddress = new Map<string, number>();
  private readonly keys = new WeakMap<Socket, string>();

  constructor(private readonly o: HandshakeGateOptions) {}

  /** handshakes in progress: they count against the connection cap (see the broker's CONNECT admission) */
  get size(): number {
    return this.pending.size;
  }

  /**
   * A TCP connection on the TLS port was accepted. Returns the reason to close
   * it now, or undefined: the handshake may proceed until secured() or the deadline.
   */
  accept(raw: Socket): HandshakeRefusal | undefined {
    const address = normalizeAddress(raw.remoteAddress) ?? 'unknown';
    const key = `${address}|${raw.remotePort ?? ''}`;
    // a connection of the same address and port still listed: its close is yet to be seen, it is over
    const stale = this.pending.get(key);
    if (stale) this.end(key, stale);
    let reason: HandshakeRefusal | undefined;
    if (this.o.connections() + this.pending.size >= this.o.maxConnections) reason = 'too_many_connections';
    else if (this.pending.size >= this.o.maxPending) reason = 'too_many_handshakes';
    else if ((this.perAddress.get(address) ?? 0) >= this.o.maxPendingPerAddress)
      reason = 'handshakes_per_address';
    // charged last, as at CONNECT: an attempt refused for capacity does not use up the address's rate
    else if (!this.o.chargeConnect(address)) reason = 'connect_rate';
    if (reason) {
      this.o.onRefused(reason, address);
      return reason;
    }
    // From the accept, not from the last byte read: Node's handshakeTimeout is an idle timer that a
    // client trickling its ClientHello a byte at a time keeps alive.
    const timer = setTimeout(() => {
      if (this.pending.get(key)?.raw === raw) this.timedOut(key);
    }, this.o.timeoutMs);
    timer.unref();
    const p: Pending = { raw, address, timer };
    this.pending.set(key, p);
    this.keys.set(raw, key);
    this.perAddress.set(address, (this.perAddress.get(address) ?? 0) + 1);
    raw.once('close', () => {
      if (this.pending.get(key) === p) this.end(key, p);
    });
    return undefined;
  }

  /** The handshake completed: from here on the connection is MQTT's (CONNECT within connectTimeoutMs). */
  secured(tls: TLSSocket): void {
    const key = this.keyOf(tls);
    const p = this.pending.get(key);
    if (p) this.end(key, p);
  }

  /**
   * Node's own handshake timer fired (handshakeTimeout, set to the same value):
   * counted once, as ours. Node 20 only reports it (tlsClientError) and leaves
   * the connection open, so it is closed here.
   */
  nodeTimedOut(tls: TLSSocket): void {
    this.timedOut(this.keyOf(tls));
  }

  private timedOut(key: string): void {
    const p = this.pending.get(key);
    if (!p) return;
    this.end(key, p);
    p.raw.destroy();
    this.o.onTimeout(p.address);
  }

  private keyOf(tls: TLSSocket): string {
    // the raw socket under it (Node's _parent) has the key even once destroyed; its address otherwise
    const parent = (tls as unknown as { _parent?: unknown })._parent;
    const known = parent ? this.keys.get(parent as Socket) : undefined;
    if (known) return known;
    return `${normalizeAddress(tls.remoteAddress) ?? 'unknown'}|${tls.remotePort ?? ''}`;
  }

  private end(key: string, p: Pending): void {
    clearTimeout(p.timer);
    this.pending.delete(key);
    const n = (this.perAddress.get(p.address) ?? 1) - 1;
    if (n > 0) this.perAddress.set(p.address, n);
    else this.perAddress.delete(p.address);
  }
}
