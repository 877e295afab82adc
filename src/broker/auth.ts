import type { Logger } from 'pino';
import type { RateLimitedLog } from '../log.js';
import type { DeviceRow } from '../metadata/snapshot.js';
import type { Metrics } from '../metrics.js';
import { type Principal, roleOf } from './acl.js';
import { checkStoredHash, dummyHash, KDF_LIMITS, type VerifiedCache } from './credentials.js';
import type { Login } from './liveRights.js';
import type { LoginGuard } from './loginGuard.js';
import { readSession } from './sessionRecord.js';

export interface UserRow {
  readonly password_hash: string;
  readonly role: string | null;
}

export interface AuthenticatorOptions {
  readonly allowAnonymous: boolean;
  /** the current metadata snapshot's devices */
  readonly devices: () => readonly DeviceRow[];
  /** the system's users table (undefined without PostgreSQL); throws when PostgreSQL cannot answer */
  readonly lookupUser?: (username: string) => Promise<UserRow | undefined>;
  /** the system's Redis sessions (auth.redisSessions): the raw session:{id} value */
  readonly lookupSession?: (id: string) => Promise<string | null>;
  /** longest a users or session look-up may take before the login is answered 0x03 (auth.loginLookupTimeoutMs) */
  readonly lookupTimeoutMs?: number;
  readonly now?: () => number;
  readonly cache: VerifiedCache;
  /** failed-login limits per address and user name; none: unlimited */
  readonly guard?: LoginGuard;
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly refusals: RateLimitedLog;
}

type Refusal = { ok: false; returnCode: 3 | 4 | 5; reason: string; retryAfterS?: number };

/** `login`: what the rights came from, re-checked while the client stays connected (liveRights.ts) */
export type AuthResult = { ok: true; principal: Principal; login: Login } | Refusal;

/** A look-up that did not answer in time: the login is answered, whatever the look-up does later. */
function withTimeout<T>(p: Promise<T>, ms: number | undefined): Promise<T> {
  if (!ms) return p;
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`lookup timeout: no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

const isTimeout = (err: unknown) =>
  (err as { why?: string }).why === 'timeout' || /timeout|timed out/i.test((err as Error).message ?? '');

const ANONYMOUS: Principal = { username: null, role: 'admin', buildingId: null, anonymous: true };

/**
 * Credentials in the contract's order: mqtt_devices, then users. Passwords are
 * never logged; a refusal is counted by reason and logged (rate-limited) with
 * the client id and user name only.
 */
export class Authenticator {
  constructor(private readonly opts: AuthenticatorOptions) {}

  async authenticate(
    clientId: string,
    username: string | undefined,
    password: Buffer | undefined,
    certName?: string,
    address?: string,
  ): Promise<AuthResult> {
    const r = await this.check(username, password, certName, address);
    if (!r.ok) {
      this.opts.metrics.authRefused.inc({ reason: r.reason });
      this.opts.refusals.warn(
        `auth:${r.reason}`,
        { clientId, username: username ?? null, reason: r.reason },
        'connection refused',
      );
    }
    return r;
  }

  private async check(
    username: string | undefined,
    password: Buffer | undefined,
    certName?: string,
    address?: string,
  ): Promise<AuthResult> {
    if (!username && certName) {
      // a client certificate signed by the configured CA whose CN names a device
      const device = this.opts.devices().find((d) => d.username === certName);
      if (device) {
        if (!device.enabled) return { ok: false, returnCode: 5, reason: 'disabled' };
        return {
          ok: true,
          principal: {
            username: certName,
            role: roleOf(device.role, 'devices'),
            buildingId: device.building_id,
            anonymous: false,
          },
          login: { kind: 'device', name: certName },
        };
      }
    }
    if (!username) {
      return this.opts.allowAnonymous
        ? { ok: true, principal: ANONYMOUS, login: { kind: 'anonymous' } }
        : { ok: false, returnCode: 5, reason: 'anonymous' };
    }
    const pw = password?.toString('utf8') ?? '';
    const guard = this.opts.guard;
    const wait = guard?.blockedMs(address, username, pw) ?? 0;
    if (wait > 0)
      return { ok: false, returnCode: 3, reason: 'login_rate', retryAfterS: Math.ceil(wait / 1000) };
    const attempt = guard?.begin(address, username, pw);
    let outcome: 'ok' | 'failed' | 'other' = 'other';
    try {
      const r = await this.password(username, pw);
      // a stored hash refused as too costly counts like a wrong password: otherwise guesses at such a
      // name would never be limited, and that alone would tell the name exists
      outcome = r.ok
        ? 'ok'
        : r.reason === 'bad_credentials' || r.reason === 'kdf_too_costly'
          ? 'failed'
          : 'other';
      return r;
    } finally {
      // also when the check throws: a pending attempt left behind would never be counted again
      if (attempt) guard!.end(attempt, outcome);
    }
  }

  private dummy: { like: string | undefined; hash: string } | undefined;

  /** A hash shaped like the devices' (what `energy-ingest passwd` writes), matched by no password. */
  private dummyHash(): string {
    const like = this.opts.devices()[0]?.password_hash;
    if (!this.dummy || this.dummy.like !== like) this.dummy = { like, hash: dummyHash(like) };
    return this.dummy.hash;
  }

  /**
   * A derivation against the dummy hash. The user name goes into the derived
   * input: concurrent guesses of one password at several unknown names must not
   * share one derivation (the verified cache coalesces identical inputs), or
   * they would answer sooner than guesses at names that exist.
   */
  private dummyVerify(username: string, pw: string): Promise<boolean | 'busy'> {
    return this.opts.cache.verify(`${username}\u0000${pw}`, this.dummyHash());
  }

  private async verify(pw: string, stored: string, username: string): Promise<Refusal | undefined> {
    const shape = checkStoredHash(stored);
    if (shape !== 'ok') {
      // never the stored hash's own cost, but the dummy's: a name whose hash is too costly or no
      // hash at all must not answer sooner than any other (issue 18 item 10)
      const ran = await this.dummyVerify(username, pw);
      if (ran === 'busy') return { ok: false, returnCode: 3, reason: 'login_busy', retryAfterS: 1 };
      if (shape === 'malformed') return { ok: false, returnCode: 4, reason: 'bad_credentials' };
      this.opts.refusals.warn(
        `auth:kdf_too_costly:${username}`,
        { username, limits: KDF_LIMITS },
        'login refused: the stored password hash asks for more key-derivation work than allowed; set the password again (energy-ingest passwd)',
      );
      return { ok: false, returnCode: 4, reason: 'kdf_too_costly' };
    }
    const ok = await this.opts.cache.verify(pw, stored);
    if (ok === 'busy') return { ok: false, returnCode: 3, reason: 'login_busy', retryAfterS: 1 };
    return ok ? undefined : { ok: false, returnCode: 4, reason: 'bad_credentials' };
  }

  /**
   * The users look-up. undefined: no such user; a Refusal (0x03): PostgreSQL
   * could not say (down, frozen, locked, too busy). An infrastructure failure is
   * never "bad user name or password": a client must not give up on its credentials.
   */
  private async lookup(
    username: string,
    pw: string,
    derived = false,
  ): Promise<UserRow | undefined | Refusal> {
    try {
      return await withTimeout(
        this.opts.lookupUser?.(username) ?? Promise.resolve(undefined),
        this.opts.lookupTimeoutMs,
      );
    } catch (err) {
      const reason = isTimeout(err) ? 'lookup_timeout' : 'lookup_failed';
      this.opts.refusals.warn(
        `auth:${reason}`,
        { err: (err as Error).message, code: (err as { code?: string }).code },
        'users lookup failed',
      );
      // the same derivation as any refused login, so that this answer's timing tells no more
      // than its code (a device name's wrong password also ends with this look-up)
      if (!derived) await this.dummyVerify(username, pw);
      return { ok: false, returnCode: 3, reason, retryAfterS: 1 };
    }
  }

  private async password(username: string, pw: string): Promise<AuthResult> {
    const device = this.opts.devices().find((d) => d.username === username);
    if (device) {
      // the password first: a disabled device's name is told apart only by who knows its password
      const refused = await this.verify(pw, device.password_hash, username);
      if (refused) {
        if (refused.returnCode === 3) return refused;
        // the look-up an unknown name costs, done here too (its answer unused): otherwise, with
        // PostgreSQL down, device names would answer 0x04 and every other name 0x03
        const parity = await this.lookup(username, pw, true);
        return parity && 'ok' in parity ? parity : refused;
      }
      if (!device.enabled) return { ok: false, returnCode: 5, reason: 'disabled' };
      return {
        ok: true,
        principal: {
          username,
          role: roleOf(device.role, 'devices'),
          buildingId: device.building_id,
          anonymous: false,
        },
        login: { kind: 'device', name: username, hash: device.password_hash },
      };
    }
    const found = await this.lookup(username, pw);
    if (found && 'ok' in found) {
      // the reserved session name needs Redis, not PostgreSQL
      if (username === 'session' && this.opts.lookupSession) return this.session(pw);
      return found;
    }
    const user = found;
    if (user) {
      const refused = await this.verify(pw, user.password_hash, username);
      if (!refused) {
        return {
          ok: true,
          principal: { username, role: roleOf(user.role, 'users'), buildingId: null, anonymous: false },
          login: { kind: 'user', name: username, hash: user.password_hash },
        };
      }
      if (refused.reason !== 'bad_credentials') return refused;
    }
    if (username === 'session' && this.opts.lookupSession) return this.session(pw);
    // an unknown name costs a derivation too: otherwise its quick refusal tells which names exist
    if (!user) {
      const ran = await this.dummyVerify(username, pw);
      if (ran === 'busy') return { ok: false, returnCode: 3, reason: 'login_busy', retryAfterS: 1 };
      return { ok: false, returnCode: 4, reason: 'bad_credentials' };
    }
    return { ok: false, returnCode: 4, reason: 'bad_credentials' };
  }

  /** The guide's session:{id} = {"user_id","username","role","login_time","expires_at"}. */
  private async session(id: string): Promise<AuthResult> {
    // session ids are opaque but never need more than this; anything else is not looked up
    if (!/^[\w.:-]{1,200}$/.test(id)) return { ok: false, returnCode: 4, reason: 'bad_credentials' };
    let raw: string | null;
    try {
      raw = await withTimeout(this.opts.lookupSession!(id), this.opts.lookupTimeoutMs);
    } catch (err) {
      const reason = isTimeout(err) ? 'session_lookup_timeout' : 'session_lookup_failed';
      this.opts.refusals.warn(`auth:${reason}`, { err: (err as Error).message }, 'session lookup failed');
      // Redis down or frozen: "server unavailable", never "bad user name or password"
      return { ok: false, returnCode: 3, reason, retryAfterS: 1 };
    }
    // strictly: a time without zone is UTC, anything but an ISO 8601 date-time is refused (sessionRecord.ts)
    const s = readSession(raw, (this.opts.now ?? Date.now)());
    if (!s.ok)
      return s.reason === 'session_expired'
        ? { ok: false, returnCode: 5, reason: 'session_expired' }
        : { ok: false, returnCode: 4, reason: 'bad_credentials' };
    const name = s.username ?? `session:${id}`;
    return {
      ok: true,
      principal: { username: name, role: roleOf(s.role, 'users'), buildingId: null, anonymous: false },
      login: { kind: 'session', id, username: s.username, expiresAt: s.expiresAt },
    };
  }
}
