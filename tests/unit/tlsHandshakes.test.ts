import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { HandshakeGate, type HandshakeRefusal } from '../../src/broker/tlsHandshakes.js';

// The gate in front of the TLS listener (issue 18 item 5); the e2e file
// tests/e2e/tls-handshakes.test.ts drives it with real sockets and openssl.

let port = 40000;
function rawSocket(address: string): Socket & { destroyed: boolean } {
  const s = new EventEmitter() as unknown as Socket & { destroyed: boolean };
  Object.assign(s, { remoteAddress: address, remotePort: port++, destroyed: false });
  s.destroy = (() => {
    if (!s.destroyed) {
      s.destroyed = true;
      s.emit('close');
    }
    return s;
  }) as Socket['destroy'];
  return s;
}
function tlsOver(raw: Socket): TLSSocket {
  return {
    _parent: raw,
    remoteAddress: raw.remoteAddress,
    remotePort: raw.remotePort,
  } as unknown as TLSSocket;
}

function gate(over: Partial<ConstructorParameters<typeof HandshakeGate>[0]> = {}) {
  const refused: Array<[HandshakeRefusal, string]> = [];
  const timeouts: string[] = [];
  let charged = 0;
  const g = new HandshakeGate({
    maxPending: 3,
    maxPendingPerAddress: 2,
    timeoutMs: 1000,
    maxConnections: 10,
    connections: () => 0,
    chargeConnect: () => ++charged <= 100,
    onRefused: (reason, address) => refused.push([reason, address]),
    onTimeout: (address) => timeouts.push(address),
    ...over,
  });
  return { g, refused, timeouts, charged: () => charged };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('HandshakeGate', () => {
  it('bounds handshakes in progress in total and per address; a closed or secured one frees its place', () => {
    const { g, refused } = gate();
    const a1 = rawSocket('10.0.0.1');
    const a2 = rawSocket('::ffff:10.0.0.1');
    expect(g.accept(a1)).toBeUndefined();
    expect(g.accept(a2)).toBeUndefined();
    expect(g.accept(rawSocket('10.0.0.1'))).toBe('handshakes_per_address');
    const b = rawSocket('10.0.0.2');
    expect(g.accept(b)).toBeUndefined();
    expect(g.accept(rawSocket('10.0.0.3'))).toBe('too_many_handshakes');
    expect(g.size).toBe(3);
    a1.destroy();
    g.secured(tlsOver(b));
    expect(g.size).toBe(1);
    expect(g.accept(rawSocket('10.0.0.1'))).toBeUndefined();
    expect(refused).toEqual([
      ['handshakes_per_address', '10.0.0.1'],
      ['too_many_handshakes', '10.0.0.3'],
    ]);
  });

  it('counts handshakes against the connection cap, and charges the rate only for admitted ones', () => {
    let connected = 8;
    const { g, charged } = gate({ connections: () => connected, maxConnections: 10 });
    expect(g.accept(rawSocket('10.0.0.1'))).toBeUndefined();
    expect(g.accept(rawSocket('10.0.0.2'))).toBeUndefined();
    expect(g.accept(rawSocket('10.0.0.3'))).toBe('too_many_connections');
    expect(charged()).toBe(2);
    connected = 0;
    const limited = gate({ chargeConnect: () => false });
    expect(limited.g.accept(rawSocket('10.0.0.4'))).toBe('connect_rate');
    expect(limited.g.size).toBe(0);
  });

  it('closes a handshake at the deadline from the accept, counted once even when Node reports its own timeout', () => {
    vi.useFakeTimers();
    const { g, timeouts } = gate();
    const raw = rawSocket('10.0.0.9');
    const done = rawSocket('10.0.0.8');
    g.accept(raw);
    g.accept(done);
    g.secured(tlsOver(done));
    g.nodeTimedOut(tlsOver(raw));
    expect(raw.destroyed).toBe(true);
    vi.advanceTimersByTime(1000);
    expect(timeouts).toEqual(['10.0.0.9']);
    expect(done.destroyed).toBe(false);
    const late = rawSocket('10.0.0.7');
    g.accept(late);
    vi.advanceTimersByTime(999);
    expect(late.destroyed).toBe(false);
    vi.advanceTimersByTime(1);
    expect(late.destroyed).toBe(true);
    expect(timeouts).toEqual(['10.0.0.9', '10.0.0.7']);
    expect(g.size).toBe(0);
  });
});
