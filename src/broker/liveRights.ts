import type { Client } from 'aedes';
import type { Logger } from 'pino';
import type { RateLimitedLog } from '../log.js';
import type { DeviceRow } from '../metadata/snapshot.js';
import type { Metrics } from '../metrics.js';
import { redactText } from '../redact.js';
import { canSubscribe, type Principal, roleOf } from './acl.js';
import { readSession } from './sessionRecord.js';

// Rights of connected clients follow the rows they came from (issue 18, items 2 and 3).
//
// A login's rights used to be fixed at CONNECT: a device moved from building 1
// to 2 kept publishing building 1's readings, a device or `users` admin demoted
// (or deleted) kept its `$SYS/#` subscription, and a Redis-session login
// outlived its session (logout, expiry). Only a disabled or deleted device was
// cut off. Here every admitted client keeps what its rights came from (its
// Login), and:
//
// - on every metadata snapshot, device logins are re-derived from the current
//   mqtt_devices rows at once (the broker's ACL reads the principal this
//   updates, so publish, subscribe and delivery decisions use the new rights);
// - on every snapshot and every auth.recheckIntervalSeconds, `users` logins are
//   looked up again (one query per 500 names: the users table sends no NOTIFY,
//   the interval bounds how long a change there takes) and session logins are
//   read again from Redis (50 GETs at a time);
// - a session login is also re-read when its expires_at passes (a timer).
//
// A login whose row is gone, disabled, whose password hash changed, or whose
// session is gone, malformed or expired is disconnected. A login whose role or
// building changed keeps its connection with the new rights; subscriptions
// the new rights do not allow are removed (live and from a persistent
// session's store), so nothing more arrives on them.
//
// A failed re-check (PostgreSQL or Redis unreachable) changes nothing: the
// connections keep the rights of the last successful check until the next one
// succeeds (a store outage must not disconnect every dashboard at once), except
// that a session login is disconnected once its last known expires_at has
// passed and Redis cannot confirm it was extended.

export type Login =
  | { readonly kind: 'anonymous' }
  /** hash undefined: a client certificate naming the device */
  | { readonly kind: 'device'; readonly name: string; readonly hash?: string }
  | { readonly kind: 'user'; readonly name: string; readonly hash: string }
  | {
      readonly kind: 'session';
      readonly id: string;
      readonly username: string | null;
      readonly expiresAt: number;
    };

export interface UserRightsRow {
  readonly password_hash: string;
  readonly role: string | null;
}

export interface LiveRightsOptions {
  readonly principal: (client: Client) => Principal | undefined;
  readonly setPrincipal: (client: Client, who: Principal) => void;
  /** forget filters from a persistent session's store (Aedes's persistence) */
  readonly removeStoredSubscriptions: (client: Client, filters: string[]) => Promise<unknown>;
  /** the users rows of these names (absent: no such row) */
  readonly lookupUsers?: (names: readonly string[]) => Promise<ReadonlyMap<string, UserRightsRow>>;
  /** the raw session:{id} value, null when the key does not exist */
  readonly lookupSession?: (id: string) => Promise<string | null>;
  readonly recheckIntervalMs: number;
  readonly now?: () => number;
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly refusals: RateLimitedLog;
}

const USERS_PER_QUERY = 500;
const SESSIONS_AT_ONCE = 50;
/** setTimeout's longest delay; a later expiry re-arms when it fires */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** a store that accepts but never answers (frozen) fails the check instead of holding every later one */
const LOOKUP_TIMEOUT_MS = 10_000;

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function devicePrincipal(row: DeviceRow): Principal {
  return {
    username: row.username,
    role: roleOf(row.role, 'devices'),
    buildingId: row.building_id,
    anonymous: false,
  };
}

function deviceRevoked(
  row: DeviceRow,
  login: Extract<Login, { kind: 'device' }>,
): 'device_disabled' | 'password_changed' | undefined {
  if (!row.enabled) return 'device_disabled';
  // a new password ends the logins made with the old one (a certificate login has none)
  if (login.hash !== undefined && row.password_hash !== login.hash) return 'password_changed';
  return undefined;
}

export class LiveRights {
  /** admitted clients still connected → what their rights came from (bounded by the connections) */
  private readonly logins = new Map<Client, Login>();
  /** session logins → the timer at their expires_at */
  private readonly timers = new Map<Client, NodeJS.Timeout>();
  private interval: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private readonly now: () => number;
  /** the newest snapshot's devices by name (null until the broker sees its first snapshot) */
  private devices: ReadonlyMap<string, DeviceRow> | null = null;

  constructor(private readonly o: LiveRightsOptions) {
    this.now = o.now ?? Date.now;
  }

  start(): void {
    this.interval = setInterval(() => void this.recheck(), this.o.recheckIntervalMs);
    this.interval.unref();
  }

  stop(): void {
    if (this.interval) clearInterval(this.interval);
    this.interval = null;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.logins.clear();
  }

  /** connected clients whose rights are followed */
  get size(): number {
    return this.logins.size;
  }

  /**
   * At admission: the rights of a device login as of the newest snapshot (a
   * snapshot may have arrived while its password was checked, after
   * onSnapshot looked at the admitted clients); undefined: no longer allowed.
   */
  current(login: Login, who: Principal): Principal | undefined {
    if (login.kind !== 'device' || !this.devices) return who;
    const row = this.devices.get(login.name);
    return row && !deviceRevoked(row, login) ? devicePrincipal(row) : undefined;
  }

  /** A client was admitted with these rights. */
  admitted(client: Client, login: Login): void {
    this.logins.set(client, login);
    if (login.kind === 'session') this.armExpiry(client, login.expiresAt);
  }

  /** Its connection ended. */
  ended(client: Client): void {
    this.logins.delete(client);
    const t = this.timers.get(client);
    if (t) clearTimeout(t);
    this.timers.delete(client);
  }

  /**
   * A new metadata snapshot: device logins follow their rows now; users and
   * session logins are re-checked in the background. Returns how many clients
   * were disconnected at once.
   */
  onSnapshot(devices: readonly DeviceRow[]): number {
    const byName = new Map(devices.map((d) => [d.username, d]));
    this.devices = byName;
    let closed = 0;
    for (const [client, login] of this.logins) {
      if (login.kind !== 'device') continue;
      const row = byName.get(login.name);
      if (!row) closed += this.disconnect(client, login, 'device_removed');
      else {
        const revoked = deviceRevoked(row, login);
        if (revoked) closed += this.disconnect(client, login, revoked);
        else this.apply(client, devicePrincipal(row));
      }
    }
    void this.recheck();
    return closed;
  }

  /** Re-check users and session logins; one at a time, a call meanwhile runs one more afterwards. */
  recheck(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          // apart: PostgreSQL down must not hold the session checks, nor Redis down the users checks
          await Promise.all([this.recheckUsers(), this.recheckSessions()]);
        } while (this.again && this.interval !== null);
      } catch (err) {
        this.o.log.warn({ err: (err as Error).message }, 'live rights re-check failed');
      } finally {
        this.running = null;
      }
    })();
    return this.running;
  }

  private async recheckUsers(): Promise<void> {
    const lookup = this.o.lookupUsers;
    const users = [...this.logins].filter(
      (e): e is [Client, Extract<Login, { kind: 'user' }>] => e[1].kind === 'user',
    );
    if (!lookup || users.length === 0) return;
    const names = [...new Set(users.map(([, l]) => l.name))];
    const rows = new Map<string, UserRightsRow>();
    try {
      for (let i = 0; i < names.length; i += USERS_PER_QUERY) {
        const chunk = names.slice(i, i + USERS_PER_QUERY);
        for (const [k, v] of await withTimeout(lookup(chunk), LOOKUP_TIMEOUT_MS)) rows.set(k, v);
      }
    } catch (err) {
      this.failed('postgres', err);
      return;
    }
    for (const [client, login] of users) {
      if (this.logins.get(client) !== login) continue; // ended meanwhile
      const row = rows.get(login.name);
      if (!row) this.disconnect(client, login, 'user_removed');
      else if (row.password_hash !== login.hash) this.disconnect(client, login, 'password_changed');
      else
        this.apply(client, {
          username: login.name,
          role: roleOf(row.role, 'users'),
          buildingId: null,
          anonymous: false,
        });
    }
  }

  private async recheckSessions(): Promise<void> {
    if (!this.o.lookupSession) return;
    const sessions = [...this.logins].filter(
      (e): e is [Client, Extract<Login, { kind: 'session' }>] => e[1].kind === 'session',
    );
    for (let i = 0; i < sessions.length; i += SESSIONS_AT_ONCE) {
      await Promise.all(sessions.slice(i, i + SESSIONS_AT_ONCE).map(([c, l]) => this.checkSession(c, l)));
    }
  }

  /** Read one session again; `atExpiry`: its known expires_at has passed. */
  private async checkSession(
    client: Client,
    login: Extract<Login, { kind: 'session' }>,
    atExpiry = false,
  ): Promise<void> {
    let raw: string | null;
    try {
      raw = await withTimeout(this.o.lookupSession!(login.id), LOOKUP_TIMEOUT_MS);
    } catch (err) {
      this.failed('redis', err);
      // what Redis said last is all there is: past its expiry, the session is over
      if (atExpiry && this.logins.get(client) === login) this.disconnect(client, login, 'session_expired');
      return;
    }
    if (this.logins.get(client) !== login) return; // ended (or re-checked) meanwhile
    const s = readSession(raw, this.now());
    if (!s.ok) {
      this.disconnect(client, login, s.reason);
      return;
    }
    // the id now names another user's session: not the login this client made
    if (s.username !== login.username) {
      this.disconnect(client, login, 'session_changed');
      return;
    }
    if (s.expiresAt !== login.expiresAt) {
      // extended (or shortened) by the system: follow it
      const next = { ...login, expiresAt: s.expiresAt };
      this.logins.set(client, next);
      this.armExpiry(client, s.expiresAt);
    }
    this.apply(client, {
      username: s.username ?? `session:${login.id}`,
      role: roleOf(s.role, 'users'),
      buildingId: null,
      anonymous: false,
    });
  }

  private armExpiry(client: Client, expiresAt: number): void {
    const old = this.timers.get(client);
    if (old) clearTimeout(old);
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, expiresAt - this.now()));
    const t = setTimeout(() => {
      this.timers.delete(client);
      const login = this.logins.get(client);
      if (login?.kind !== 'session') return;
      if (login.expiresAt > this.now()) this.armExpiry(client, login.expiresAt);
      else void this.checkSession(client, login, true);
    }, delay);
    t.unref();
    this.timers.set(client, t);
  }

  /** New rights for a connected client: used by the ACL from now on; subscriptions beyond them removed. */
  private apply(client: Client, next: Principal): void {
    const cur = this.o.principal(client);
    if (cur && cur.role === next.role && cur.buildingId === next.buildingId && cur.username === next.username)
      return;
    this.o.setPrincipal(client, next);
    this.o.metrics.liveRightsChanged.inc();
    this.o.log.info(
      {
        clientId: client.id,
        username: next.username,
        role: next.role,
        buildingId: next.buildingId,
        was: cur ? { role: cur.role, buildingId: cur.buildingId } : null,
      },
      'rights of a connected client changed',
    );
    this.prune(client, next);
  }

  /**
   * Remove the client's subscriptions its new rights do not allow. (A
   * persistent session resumed later needs nothing here: Aedes 1.2 passes
   * restored subscriptions through authorizeSubscribe again.)
   */
  private prune(client: Client, next: Principal): void {
    const subs = (client as unknown as { subscriptions?: Record<string, unknown> }).subscriptions ?? {};
    const gone = Object.keys(subs).filter((f) => !canSubscribe(next, f).ok);
    if (gone.length === 0) return;
    this.o.metrics.liveSubscriptionsRemoved.inc(undefined, gone.length);
    this.o.refusals.warn(
      'live:subscriptions_removed',
      {
        clientId: client.id,
        username: next.username,
        filters: gone.slice(0, 10).map((f) => f.slice(0, 200)),
      },
      'subscriptions removed: the login no longer has the rights for them',
    );
    // cannot remove them: the client goes rather than keep what it may no longer hold
    const fail = () => this.disconnect(client, undefined, 'unsubscribe_failed');
    client.unsubscribe(gone as never, (err?: unknown) => {
      if (err) fail();
    });
    if (!client.clean) this.o.removeStoredSubscriptions(client, gone).catch(fail);
  }

  private disconnect(client: Client, login: Login | undefined, reason: string): number {
    if (!this.logins.has(client)) return 0;
    const who = this.o.principal(client);
    this.ended(client);
    this.o.metrics.liveRightsDisconnected.inc({ reason });
    this.o.refusals.warn(
      `live:${reason}`,
      { clientId: client.id, username: who?.username ?? null, login: login?.kind ?? null, reason },
      'connected client disconnected: its rights were revoked',
    );
    client.close();
    return 1;
  }

  private failed(store: 'postgres' | 'redis', err: unknown): void {
    this.o.metrics.liveRightsChecksFailed.inc({ store });
    this.o.refusals.warn(
      `live:check_failed:${store}`,
      { store, err: redactText((err as Error).message) },
      'cannot re-check the rights of connected clients; they keep them until a check succeeds',
    );
  }
}
