import type { Logger } from 'pino';
import type { Metrics } from '../http/metrics.js';
import type { RateLimitedLog } from '../log.js';
import type { DeviceRow } from '../metadata/snapshot.js';
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
  /** the system's users table (undefined without PostgreSQL) */
  readonly lookupUser?: (username: string) => Promise<UserRow | undefined>;
  /** the system's Redis sessions (auth.redisSessions): the raw session:{id} value */
  readonly lookupSession?: (id: string) => Promise<string | null>;
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
      outcome = r.ok ? 'ok' : r.reason === 'bad_credentials' ? 'failed' : 'other';
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

  private async verify(pw: string, stored: string, username?: string): Promise<Refusal | undefined> {
    if (checkStoredHash(stored) === 'too_costly') {
      // refused before any derivation: the cost is the stored hash's, not the client's
      this.opts.refusals.warn(
        `auth:kdf_too_costly:${username}`,
        { username: username ?? null, limits: KDF_LIMITS },
        'login refused: the stored password hash asks for more key-derivation work than allowed; set the password again (energy-ingest passwd)',
      );
      return { ok: false, returnCode: 4, reason: 'kdf_too_costly' };
    }
    const ok = await this.opts.cache.verify(pw, stored);
    if (ok === 'busy') return { ok: false, returnCode: 3, reason: 'login_busy', retryAfterS: 1 };
    return ok ? undefined : { ok: false, returnCode: 4, reason: 'bad_credentials' };
  }

  private async password(username: string, pw: string): Promise<AuthResult> {
    const device = this.opts.devices().find((d) => d.username === username);
    if (device) {
      // the password first: a disabled device's name is told apart only by who knows its password
      const refused = await this.verify(pw, device.password_hash, username);
      if (refused) return refused;
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
    let user: UserRow | undefined;
    try {
      user = await this.opts.lookupUser?.(username);
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message }, 'users lookup failed');
      return { ok: false, returnCode: 4, reason: 'lookup_failed' };
    }
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
    if (!user)
      return (
        (await this.verify(pw, this.dummyHash())) ?? { ok: false, returnCode: 4, reason: 'bad_credentials' }
      );
    return { ok: false, returnCode: 4, reason: 'bad_credentials' };
  }

  /** The guide's session:{id} = {"user_id","username","role","login_time","expires_at"}. */
  private async session(id: string): Promise<AuthResult> {
    // session ids are opaque but never need more than this; anything else is not looked up
    if (!/^[\w.:-]{1,200}$/.test(id)) return { ok: false, returnCode: 4, reason: 'bad_credentials' };
    let raw: string | null;
    try {
      raw = await this.opts.lookupSession!(id);
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message }, 'session lookup failed');
      return { ok: false, returnCode: 4, reason: 'lookup_failed' };
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
