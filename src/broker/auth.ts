import type { Logger } from 'pino';
import type { Metrics } from '../http/metrics.js';
import type { RateLimitedLog } from '../log.js';
import type { DeviceRow } from '../metadata/snapshot.js';
import { type Principal, roleOf } from './acl.js';
import type { VerifiedCache } from './credentials.js';

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
  readonly cache: VerifiedCache;
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly refusals: RateLimitedLog;
}

export type AuthResult =
  | { ok: true; principal: Principal }
  | { ok: false; returnCode: 4 | 5; reason: string };

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
  ): Promise<AuthResult> {
    const r = await this.check(username, password, certName);
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
        };
      }
    }
    if (!username) {
      return this.opts.allowAnonymous
        ? { ok: true, principal: ANONYMOUS }
        : { ok: false, returnCode: 5, reason: 'anonymous' };
    }
    const pw = password?.toString('utf8') ?? '';
    const device = this.opts.devices().find((d) => d.username === username);
    if (device) {
      if (!device.enabled) return { ok: false, returnCode: 5, reason: 'disabled' };
      if (!(await this.opts.cache.verify(pw, device.password_hash)))
        return { ok: false, returnCode: 4, reason: 'bad_credentials' };
      return {
        ok: true,
        principal: {
          username,
          role: roleOf(device.role, 'devices'),
          buildingId: device.building_id,
          anonymous: false,
        },
      };
    }
    let user: UserRow | undefined;
    try {
      user = await this.opts.lookupUser?.(username);
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message }, 'users lookup failed');
      return { ok: false, returnCode: 4, reason: 'lookup_failed' };
    }
    if (user && (await this.opts.cache.verify(pw, user.password_hash))) {
      return {
        ok: true,
        principal: { username, role: roleOf(user.role, 'users'), buildingId: null, anonymous: false },
      };
    }
    return { ok: false, returnCode: 4, reason: 'bad_credentials' };
  }
}
