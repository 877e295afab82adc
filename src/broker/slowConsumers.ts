import type { Client } from 'aedes';

// Slow consumer isolation (issue 11, item 4; contract section 7).
//
// Aedes writes every packet for a client with mqtt-packet's writeToStream and,
// when the socket reports a full buffer, calls `client.waitForDrain(done)`:
// the write's callback, and with it the mqemitter delivery slot the packet
// came through, is held until the socket drains or `drainTimeout` (60 s)
// passes. mqemitter has `concurrency` (100) slots for every client together,
// and a publisher's next packets are read only when its publish has been
// delivered everywhere, so one subscriber that stops reading halts every
// publisher's acknowledgements (node_modules/aedes/lib/write.js, client.js).
//
// Here the write completes as soon as the bytes are handed to the socket: the
// socket's own buffer is the client's outgoing queue, and its length
// (`writableLength`) is what waits for that client. Past `maxBytes` the client
// is disconnected. So nobody waits for a slow client, and what it can pile up
// is bounded.

type DrainCallback = (err: Error | null, client: Client) => void;

interface Internals {
  waitForDrain?: (cb: DrainCallback) => void;
  conn?: { writableLength?: number; destroy(err?: Error): void };
}

/**
 * Bound `client`'s outgoing queue to `maxBytes`; `onCutOff` runs once when it
 * is disconnected for it. Returns false when the Aedes internals it relies on
 * are missing (the guard is then off).
 */
export function boundOutgoingQueue(
  client: Client,
  maxBytes: number,
  onCutOff: (queued: number) => void,
): boolean {
  const c = client as unknown as Internals;
  const conn = c.conn;
  if (typeof c.waitForDrain !== 'function' || !conn || typeof conn.writableLength !== 'number') return false;
  let cut = false;
  c.waitForDrain = (cb) => {
    const queued = conn.writableLength ?? 0;
    if (queued <= maxBytes) {
      setImmediate(cb, null, client);
      return;
    }
    if (!cut) {
      cut = true;
      onCutOff(queued);
      conn.destroy();
    }
    // an error makes Aedes close the client and forget what was queued for it
    setImmediate(cb, new Error('slow consumer: outgoing queue over its limit'), client);
  };
  return true;
}
