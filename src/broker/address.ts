import type { Client } from 'aedes';

/**
 * The peer address of an MQTT client. Over WebSocket Aedes's `conn` is the
 * stream createWebSocketStream made, which has no address: the HTTP upgrade
 * request's socket has it (without this every WebSocket client shared one
 * login-limit and connect-rate bucket, "unknown"). IPv4-mapped IPv6 addresses
 * count as their IPv4 address.
 */
export function clientAddress(client: Client): string | undefined {
  const c = client as unknown as {
    conn?: { remoteAddress?: string };
    req?: { socket?: { remoteAddress?: string } };
  };
  return normalizeAddress(c.conn?.remoteAddress ?? c.req?.socket?.remoteAddress);
}

/** A socket's remote address, IPv4-mapped IPv6 addresses as their IPv4 address. */
export function normalizeAddress(a: string | undefined): string | undefined {
  return a?.startsWith('::ffff:') ? a.slice(7) : a;
}
