import { createHash, pbkdf2, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';

// Werkzeug password hashes (what the system's Flask app writes in users and
// what `energy-ingest passwd` writes in mqtt_devices):
//   scrypt:N:r:p$salt$hexdigest        (64-byte key)
//   pbkdf2:sha256:iterations$salt$hexdigest
// The salt is used as its UTF-8 text, as werkzeug does. Verification runs in
// libuv's thread pool (async scrypt/pbkdf2), never on the event loop.

const scryptAsync = promisify(scrypt) as (
  pw: string,
  salt: string,
  len: number,
  opts: object,
) => Promise<Buffer>;
const pbkdf2Async = promisify(pbkdf2);

export type ParsedHash =
  | { method: 'scrypt'; n: number; r: number; p: number; salt: string; digest: Buffer }
  | { method: 'pbkdf2'; hash: string; iterations: number; salt: string; digest: Buffer };

export function parseWerkzeugHash(stored: string): ParsedHash | undefined {
  const [method, salt, hex] = stored.split('$');
  if (!method || salt === undefined || !hex || !/^[0-9a-f]+$/i.test(hex)) return undefined;
  const parts = method.split(':');
  const digest = Buffer.from(hex, 'hex');
  if (parts[0] === 'scrypt') {
    const [n, r, p] = parts.slice(1).map(Number) as [number, number, number];
    if (![n, r, p].every((x) => Number.isSafeInteger(x) && x > 0) || n > 2 ** 20 || r > 64 || p > 16)
      return undefined;
    return { method: 'scrypt', n, r, p, salt, digest };
  }
  if (parts[0] === 'pbkdf2') {
    const hash = parts[1] ?? 'sha256';
    const iterations = Number(parts[2] ?? 600000);
    if (
      !['sha256', 'sha512', 'sha1'].includes(hash) ||
      !Number.isSafeInteger(iterations) ||
      iterations < 1 ||
      iterations > 10_000_000
    )
      return undefined;
    return { method: 'pbkdf2', hash, iterations, salt, digest };
  }
  return undefined;
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const h = parseWerkzeugHash(stored);
  if (!h) return false;
  let key: Buffer;
  if (h.method === 'scrypt') {
    key = await scryptAsync(password, h.salt, h.digest.length, {
      N: h.n,
      r: h.r,
      p: h.p,
      maxmem: 256 * h.n * h.r + 1024 * 1024,
    });
  } else {
    key = await pbkdf2Async(password, h.salt, h.iterations, h.digest.length, h.hash);
  }
  return key.length === h.digest.length && timingSafeEqual(key, h.digest);
}

/** werkzeug's default: scrypt:32768:8:1 with a 16-character salt. */
export async function hashPassword(password: string, n = 32768, r = 8, p = 1): Promise<string> {
  const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
  const salt = [...randomBytes(16)].map((b) => alphabet[b % alphabet.length]).join('');
  const key = await scryptAsync(password, salt, 64, { N: n, r, p, maxmem: 256 * n * r + 1024 * 1024 });
  return `scrypt:${n}:${r}:${p}$${salt}$${key.toString('hex')}`;
}

/**
 * Remembers successful verifications (hundreds of sensors reconnecting after a
 * power cut would otherwise cost one scrypt each). Keyed by a SHA-256 of
 * stored hash + password, so no password is kept; bounded; a changed hash in
 * the database misses the cache by construction.
 */
export class VerifiedCache {
  private readonly seen = new Set<string>();
  private readonly inFlight = new Map<string, Promise<boolean>>();
  constructor(private readonly max = 10_000) {}

  private key(password: string, stored: string): string {
    return createHash('sha256').update(stored).update('\u0000').update(password).digest('base64');
  }

  async verify(password: string, stored: string): Promise<boolean> {
    const k = this.key(password, stored);
    if (this.seen.has(k)) return true;
    // a fleet sharing one credential reconnects at once: one scrypt serves them all
    let pending = this.inFlight.get(k);
    if (!pending) {
      pending = verifyPassword(password, stored).finally(() => this.inFlight.delete(k));
      this.inFlight.set(k, pending);
    }
    const ok = await pending;
    if (ok) {
      if (this.seen.size >= this.max) this.seen.clear();
      this.seen.add(k);
    }
    return ok;
  }
}
