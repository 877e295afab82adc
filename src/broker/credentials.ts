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

/**
 * The most a stored hash may make one check cost. The stored parameters come
 * from the database, not from us: a hash with N=2^20 (1 GiB, seconds of CPU)
 * let four unauthenticated CONNECTs stall every PUBACK for 9.4 s (issue 18
 * item 11). `energy-ingest passwd` and werkzeug write scrypt N=32768, r=8,
 * p=1 (32 MiB); werkzeug 3.1 writes pbkdf2 with 1,000,000 iterations.
 */
export const KDF_LIMITS = {
  scryptMaxN: 2 ** 16,
  scryptMaxMemoryBytes: 64 * 1024 * 1024,
  scryptMaxP: 4,
  pbkdf2MaxIterations: 1_000_000,
} as const;

/** True when a well-formed hash asks for more work than KDF_LIMITS allows. */
export function kdfCostExceeded(h: ParsedHash): boolean {
  if (h.method === 'scrypt')
    return (
      h.n > KDF_LIMITS.scryptMaxN ||
      128 * h.n * h.r > KDF_LIMITS.scryptMaxMemoryBytes ||
      h.p > KDF_LIMITS.scryptMaxP
    );
  return h.iterations > KDF_LIMITS.pbkdf2MaxIterations;
}

/** 'too_costly': the stored hash exceeds KDF_LIMITS; nothing was derived. */
export function checkStoredHash(stored: string): 'ok' | 'malformed' | 'too_costly' {
  const h = parseWerkzeugHash(stored);
  if (!h) return 'malformed';
  return kdfCostExceeded(h) ? 'too_costly' : 'ok';
}

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
  // never derive beyond the limits, whoever calls
  if (!h || kdfCostExceeded(h)) return false;
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
 * At most `maxConcurrent` key derivations at once, `maxQueued` more waiting;
 * beyond that, none. A derivation holds a thread of libuv's pool (16 threads
 * from bin/energy-ingest.js, else UV_THREADPOOL_SIZE or 4) and a core for
 * ~100 ms; the durable log's writes and fsyncs need both: password guesses
 * stalled every QoS 1 acknowledgement (issue 12 item 4).
 */
export class DerivationSlots {
  private running = 0;
  private readonly waiting: Array<() => void> = [];
  constructor(
    readonly maxConcurrent = 1,
    readonly maxQueued = 8,
  ) {}

  /** undefined: refused (queue full); the caller answers "server unavailable". */
  run<T>(fn: () => Promise<T>): Promise<T> | undefined {
    if (this.running >= this.maxConcurrent && this.waiting.length >= this.maxQueued) return undefined;
    const go = async () => {
      this.running++;
      try {
        return await fn();
      } finally {
        this.running--;
        this.waiting.shift()?.();
      }
    };
    if (this.running < this.maxConcurrent) return go();
    return new Promise<void>((resolve) => this.waiting.push(resolve)).then(go);
  }
}

/**
 * Remembers successful verifications (hundreds of sensors reconnecting after a
 * power cut would otherwise cost one scrypt each). Keyed by a SHA-256 of
 * stored hash + password, so no password is kept; bounded; a changed hash in
 * the database misses the cache by construction. Derivations go through
 * `slots`; 'busy' when they are all taken and the queue is full.
 */
export class VerifiedCache {
  private readonly seen = new Set<string>();
  private readonly inFlight = new Map<string, Promise<boolean | 'busy'>>();
  constructor(
    private readonly max = 10_000,
    private readonly slots = new DerivationSlots(),
    /** one key derivation started (energy_ingest_key_derivations_total) */
    private readonly onDerivation?: () => void,
  ) {}

  private key(password: string, stored: string): string {
    return createHash('sha256').update(stored).update('\u0000').update(password).digest('base64');
  }

  async verify(password: string, stored: string): Promise<boolean | 'busy'> {
    const k = this.key(password, stored);
    if (this.seen.has(k)) return true;
    // a fleet sharing one credential reconnects at once: one scrypt serves them all
    let pending = this.inFlight.get(k);
    if (!pending) {
      const run = this.slots.run(() => {
        this.onDerivation?.();
        return verifyPassword(password, stored);
      });
      if (!run) return 'busy';
      pending = run.finally(() => this.inFlight.delete(k));
      this.inFlight.set(k, pending);
    }
    const ok = await pending;
    if (ok === true) {
      if (this.seen.size >= this.max) this.seen.clear();
      this.seen.add(k);
    }
    return ok;
  }
}

/**
 * A hash no password matches, with the parameters of `like` (a real stored
 * hash) or werkzeug's default: verifying against it for an unknown user name
 * costs what a known name costs, so timing does not tell which names exist.
 */
export function dummyHash(like?: string): string {
  const parsed = like ? parseWerkzeugHash(like) : undefined;
  const h = parsed && !kdfCostExceeded(parsed) ? parsed : undefined;
  const method = h
    ? h.method === 'scrypt'
      ? `scrypt:${h.n}:${h.r}:${h.p}`
      : `pbkdf2:${h.hash}:${h.iterations}`
    : 'scrypt:32768:8:1';
  const len = h?.digest.length ?? 64;
  return `${method}$${randomBytes(8).toString('hex')}$${randomBytes(len).toString('hex')}`;
}
