import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import cron, { type ScheduledTask } from 'node-cron';
import pg from 'pg';
import type { Logger } from 'pino';
import { loadSnapshot, lookupUser, lookupUsers, NOTIFY_CHANNEL, pgTypes, ping } from './postgresStore.js';
import { writeBuildingCache } from './redisCache.js';
import type { MetadataSnapshot } from './snapshot.js';

export interface MetadataSyncOptions {
  readonly url: string;
  readonly refreshCron: string;
  readonly dataDir: string;
  readonly log: Logger;
  readonly redis: Redis | null;
  /** receives every new snapshot; must not throw */
  readonly onSnapshot: (s: MetadataSnapshot) => void;
}

/**
 * Keeps the metadata snapshot current (contract section 8): a load at start,
 * one on every refreshCron tick, and one at once on NOTIFY energy_ingest_metadata.
 * The LISTEN connection is re-opened after PostgreSQL restarts (and a load
 * follows, for changes missed meanwhile). The last good snapshot is kept in
 * {dataDir}/metadata.json and used when PostgreSQL is unreachable at start.
 * Ingestion never waits on any of this.
 */
export class MetadataSync {
  private pool: pg.Pool | null = null;
  private listener: pg.Client | null = null;
  private task: ScheduledTask | null = null;
  private inFlight: Promise<void> | null = null;
  private again = false;
  private debounce: NodeJS.Timeout | null = null;
  private stopped = false;
  private cachedIds = new Set<number>();
  private listenLoopDone: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  lastOkAt: number | null = null;
  lastError: string | null = null;
  listening = false;

  constructor(private readonly opts: MetadataSyncOptions) {}

  get filePath(): string {
    return join(this.opts.dataDir, 'metadata.json');
  }

  async start(): Promise<void> {
    const { log } = this.opts;
    this.pool = new pg.Pool({
      connectionString: this.opts.url,
      max: 2,
      connectionTimeoutMillis: 5000,
      statement_timeout: 10_000,
      types: pgTypes,
    });
    // an idle pooled connection dropped by a PostgreSQL restart must not crash the daemon
    this.pool.on('error', (err) => log.debug({ err: err.message }, 'postgres pool connection lost'));
    try {
      await this.refresh();
    } catch {
      await this.fromFile();
    }
    this.task = cron.schedule(this.opts.refreshCron, () => this.refresh().catch(() => {}), {
      noOverlap: true,
      name: 'metadata-refresh',
    });
    this.listenLoopDone = this.listenLoop();
  }

  private async fromFile(): Promise<void> {
    try {
      const s = JSON.parse(await readFile(this.filePath, 'utf8')) as MetadataSnapshot;
      this.opts.onSnapshot({ ...s, source: 'file' });
      this.opts.log.warn(
        { file: this.filePath, loadedAt: s.loadedAt, buildings: s.buildings.length },
        'PostgreSQL unreachable: using the last good metadata',
      );
    } catch {
      this.opts.log.warn(
        'PostgreSQL unreachable and no saved metadata: every building is accepted until it answers',
      );
    }
  }

  /** Load now; concurrent callers share the load, and a call during a load schedules one more. */
  refresh(): Promise<void> {
    if (this.inFlight) {
      this.again = true;
      return this.inFlight;
    }
    this.inFlight = (async () => {
      try {
        do {
          this.again = false;
          await this.loadOnce();
        } while (this.again && !this.stopped);
      } finally {
        this.inFlight = null;
      }
    })();
    return this.inFlight;
  }

  private async loadOnce(): Promise<void> {
    const { log } = this.opts;
    const t0 = performance.now();
    let snapshot: MetadataSnapshot;
    try {
      snapshot = await loadSnapshot(this.pool!);
    } catch (err) {
      const message = (err as Error).message;
      if (this.lastError === null)
        log.warn({ err: message }, 'metadata load failed; keeping the last good copy');
      else log.debug({ err: message }, 'metadata load failed again');
      this.lastError = message;
      throw err;
    }
    if (this.lastError !== null) log.info('metadata loads again');
    this.lastError = null;
    this.lastOkAt = Date.now();
    this.opts.onSnapshot(snapshot);
    log.debug(
      {
        buildings: snapshot.buildings.length,
        rules: snapshot.alertRules.length,
        ms: Math.round(performance.now() - t0),
      },
      'metadata loaded',
    );
    await this.save(snapshot).catch((err: unknown) =>
      log.warn({ err: (err as Error).message }, 'could not save metadata.json'),
    );
    if (this.opts.redis) {
      try {
        this.cachedIds = await writeBuildingCache(this.opts.redis, snapshot, this.cachedIds);
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'could not refresh the Redis building cache');
      }
    }
  }

  private async save(s: MetadataSnapshot): Promise<void> {
    const tmp = `${this.filePath}.tmp`;
    // device password hashes are in it: owner-only
    await writeFile(tmp, JSON.stringify(s), { mode: 0o600 });
    await rename(tmp, this.filePath);
  }

  private scheduleRefresh(): void {
    // a burst of row changes is one statement-level NOTIFY each: coalesce them
    this.debounce ??= setTimeout(() => {
      this.debounce = null;
      this.refresh().catch(() => {});
    }, 20);
  }

  private async listenLoop(): Promise<void> {
    let delay = 250;
    let first = true;
    while (!this.stopped) {
      const client = new pg.Client({ connectionString: this.opts.url, connectionTimeoutMillis: 5000 });
      this.listener = client;
      // errors may come more than once (FATAL on shutdown, then the socket): every one is handled
      let lost!: () => void;
      let ended = false;
      const closed = new Promise<void>((resolve) => {
        lost = resolve;
      });
      client.on('error', () => lost());
      client.on('end', () => {
        ended = true;
        lost();
      });
      try {
        await client.connect();
        client.on('notification', () => this.scheduleRefresh());
        await client.query(`LISTEN ${NOTIFY_CHANNEL}`);
        this.listening = true;
        this.opts.log.debug({ first, lastError: this.lastError }, 'metadata listener up');
        if (!first) this.opts.log.info('metadata listener reconnected');
        // changes made while nobody listened (or a start that fell back to metadata.json)
        if (!first || this.lastError !== null) this.scheduleRefresh();
        first = false;
        delay = 250;
        await closed;
      } catch (err) {
        this.opts.log.debug(
          { err: (err as Error).message, retryInMs: delay },
          'metadata listener cannot connect',
        );
      }
      this.listening = false;
      // end() on a client that already ended never settles in pg: only end a live one
      if (!ended) await client.end().catch(() => {});
      if (this.stopped) break;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, delay);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wake = null;
      delay = Math.min(delay * 2, 10_000);
    }
  }

  lookupUser(username: string): Promise<{ password_hash: string; role: string | null } | undefined> {
    if (!this.pool) return Promise.resolve(undefined);
    return lookupUser(this.pool, username);
  }

  /** users rows of these names, for re-checking connected logins (src/broker/liveRights.ts) */
  lookupUsers(
    names: readonly string[],
  ): Promise<Map<string, { password_hash: string; role: string | null }>> {
    if (!this.pool) return Promise.reject(new Error('metadata not started'));
    return lookupUsers(this.pool, names);
  }

  async ping(): Promise<void> {
    if (!this.pool) throw new Error('not started');
    await ping(this.pool);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.debounce) clearTimeout(this.debounce);
    await this.task?.destroy();
    this.wake?.();
    void this.listener?.end().catch(() => {});
    await this.inFlight?.catch(() => {});
    await this.listenLoopDone;
    await this.pool?.end().catch(() => {});
  }
}
