import { createHash } from 'node:crypto';
import pg from 'pg';
import type { Logger } from 'pino';
import { IngestError } from '../errors.js';
import { lookupUser, pgTypes } from './postgresStore.js';

// Login look-ups in the system's `users` table (issue 18 item 4). They used to
// share the metadata pool (2 connections, 10 s statement timeout): one CONNECT a
// second with random names behind a lock on `users` kept both connections busy
// and the metadata reload after a device was disabled failed waiting for one;
// with PostgreSQL frozen a login waited 40 s for nothing. Here they get a pool
// of their own, a timeout on every step (connect, statement, the whole call),
// a bound on how many wait, and names that do not exist are remembered briefly
// so random names cannot hammer PostgreSQL.

export interface UserRow {
  readonly password_hash: string;
  readonly role: string | null;
}

export interface UserLookupOptions {
  readonly url: string;
  /** connections of the login pool (auth.loginLookupPoolSize) */
  readonly poolSize: number;
  /** longest one look-up may take, all included (auth.loginLookupTimeoutMs) */
  readonly timeoutMs: number;
  /** look-ups waiting for a connection beyond which logins are refused at once (auth.loginLookupMaxWaiting) */
  readonly maxWaiting: number;
  /** how long an unknown name is remembered as unknown (auth.unknownUserCacheMs; 0: never) */
  readonly negativeTtlMs: number;
  /** unknown names remembered at most (auth.unknownUserCacheMax) */
  readonly negativeMax: number;
  readonly log: Logger;
  /** one query sent to PostgreSQL */
  readonly onQuery?: () => void;
  /** a remembered unknown name forgotten before its time because the map was full */
  readonly onNegativeDropped?: () => void;
  /** a look-up refused because too many were waiting for a connection */
  readonly onRefused?: () => void;
  readonly now?: () => number;
}

/** The look-up could not be answered (PostgreSQL down, frozen, locked or too busy): not "no such user". */
export class LookupUnavailable extends IngestError {
  constructor(
    readonly why: 'timeout' | 'busy' | 'error',
    detail: string,
  ) {
    super('EI_LOGIN_LOOKUP_UNAVAILABLE', `users lookup ${why}: ${detail}`);
  }
}

/** Long user names (MQTT allows 64 KiB) are kept as a digest, so an entry stays small. */
const nameKey = (name: string) =>
  name.length <= 128 ? name : `#${createHash('sha256').update(name).digest('base64')}`;

export class UserLookup {
  private readonly pool: pg.Pool;
  /** name → when it stops being "unknown"; insertion order = expiry order (one TTL for all) */
  private readonly unknown = new Map<string, number>();
  /** the same name asked for again while its query runs shares that query */
  private readonly inFlight = new Map<string, Promise<UserRow | undefined>>();
  private readonly now: () => number;

  constructor(private readonly o: UserLookupOptions) {
    this.now = o.now ?? Date.now;
    this.pool = new pg.Pool({
      connectionString: o.url,
      max: o.poolSize,
      connectionTimeoutMillis: o.timeoutMs,
      // server side (a lock on users) and client side (a frozen server never answers)
      statement_timeout: o.timeoutMs,
      query_timeout: o.timeoutMs,
      idleTimeoutMillis: 30_000,
      application_name: 'energy-ingest-login',
      types: pgTypes,
    });
    // an idle pooled connection dropped by a PostgreSQL restart must not crash the daemon
    this.pool.on('error', (err) => o.log.debug({ err: err.message }, 'login pool connection lost'));
  }

  /** undefined: no such user; throws LookupUnavailable when PostgreSQL cannot say. */
  lookup(username: string): Promise<UserRow | undefined> {
    const k = nameKey(username);
    const until = this.unknown.get(k);
    if (until !== undefined) {
      if (until > this.now()) return Promise.resolve(undefined);
      this.unknown.delete(k);
    }
    const running = this.inFlight.get(k);
    if (running) return running;
    if (this.pool.waitingCount >= this.o.maxWaiting) {
      this.o.onRefused?.();
      return Promise.reject(new LookupUnavailable('busy', 'too many logins waiting for PostgreSQL'));
    }
    const p = this.query(username).then((row) => {
      if (!row) this.remember(k);
      return row;
    });
    const shared = p.finally(() => this.inFlight.delete(k));
    this.inFlight.set(k, shared);
    return shared;
  }

  private async query(username: string): Promise<UserRow | undefined> {
    this.o.onQuery?.();
    let timer: NodeJS.Timeout | undefined;
    // pg's timeouts cover connect and query; this covers everything in between too
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new LookupUnavailable('timeout', `no answer within ${this.o.timeoutMs} ms`)),
        this.o.timeoutMs,
      );
    });
    try {
      return await Promise.race([lookupUser(this.pool, username), timeout]);
    } catch (err) {
      if (err instanceof LookupUnavailable) throw err;
      const msg = (err as Error).message;
      // pg's own timeouts, and a statement cancelled by statement_timeout (57014)
      const timedOut = /timeout|timed out/i.test(msg) || (err as { code?: string }).code === '57014';
      throw new LookupUnavailable(timedOut ? 'timeout' : 'error', msg);
    } finally {
      clearTimeout(timer);
    }
  }

  private remember(k: string): void {
    if (this.o.negativeTtlMs <= 0 || this.o.negativeMax <= 0) return;
    const t = this.now();
    for (const [name, until] of this.unknown) {
      if (until > t && this.unknown.size < this.o.negativeMax) break;
      // expired, or the map is full: the oldest goes
      if (until > t) this.o.onNegativeDropped?.();
      this.unknown.delete(name);
    }
    this.unknown.set(k, t + this.o.negativeTtlMs);
  }

  /** for tests and the status of the bounds */
  get sizes(): { unknown: number; waiting: number; total: number } {
    return { unknown: this.unknown.size, waiting: this.pool.waitingCount, total: this.pool.totalCount };
  }

  async stop(): Promise<void> {
    // a frozen server would hold end() as long as its connections: shutdown does not wait for it
    await Promise.race([
      this.pool.end().catch(() => {}),
      new Promise((r) => setTimeout(r, this.o.timeoutMs).unref()),
    ]);
  }
}
