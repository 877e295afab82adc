import { join } from 'node:path';
import type { Redis } from 'ioredis';
import cron, { type ScheduledTask } from 'node-cron';
import pg from 'pg';
import type { Logger } from 'pino';
import { retryPolicy, Sleeps } from '../retry.js';
import type { Scheduler } from '../scheduler.js';
import { loadSnapshot, lookupUsers, NOTIFY_CHANNEL, pgTypes, ping } from './postgresStore.js';
import { writeBuildingCache } from './redisCache.js';
import { ReloadScheduler } from './reloadScheduler.js';
import type { MetadataSnapshot } from './snapshot.js';
import { readSnapshotFile, saveSnapshotFile } from './snapshotFile.js';

export interface MetadataSyncOptions {
  readonly url: string;
  readonly refreshCron: string;
  /** NOTIFY-driven reloads start at least this far apart (coalesced meanwhile) */
  readonly minReloadIntervalMs: number;
  /** a failed reload is retried after this, doubling up to reloadRetryMaxMs */
  readonly reloadRetryMinMs: number;
  readonly reloadRetryMaxMs: number;
  readonly dataDir: string;
  readonly log: Logger;
  /** runs the refreshCron job ("metadata-refresh"); none: a private node-cron task (tests) */
  readonly scheduler?: Scheduler;
  readonly redis: Redis | null;
  /** receives every new snapshot; must not throw */
  readonly onSnapshot: (s: MetadataSnapshot) => void;
}

/**
 * Keeps the metadata snapshot current (contract section 8): a load at start,
 * one on every refreshCron tick, and one soon after NOTIFY energy_ingest_metadata
 * (bursts coalesced, reloads at least minReloadIntervalMs apart, a failed one
 * retried with backoff: see reloadScheduler.ts).
 * The LISTEN connection is re-opened after PostgreSQL restarts (and a load
 * follows, for changes missed meanwhile). The last good snapshot is kept in
 * {dataDir}/metadata.json and used when PostgreSQL is unreachable at start.
 * Ingestion never waits on any of this.
 */
export class MetadataSync {
  private pool: pg.Pool | null = null;
  private listener: pg.Client | null = null;
  private task: ScheduledTask | null = null;
  readonly reloads: ReloadScheduler;
  /** NOTIFY energy_ingest_metadata received */
  notifications = 0;
  private stopped = false;
  private cachedIds = new Set<number>();
  private listenLoopDone: Promise<void> | null = null;
  /** the listener's reconnect sleep, cut short at stop */
  private readonly sleeps = new Sleeps();
  lastOkAt: number | null = null;
  lastError: string | null = null;
  listening = false;

  constructor(private readonly opts: MetadataSyncOptions) {
    this.reloads = new ReloadScheduler({
      minIntervalMs: opts.minReloadIntervalMs,
      retryMinMs: opts.reloadRetryMinMs,
      retryMaxMs: opts.reloadRetryMaxMs,
      load: () => this.loadOnce(),
      onFailure: (_err, retryInMs) => opts.log.debug({ retryInMs }, 'metadata reload will be retried'),
    });
  }

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
      await this.reloads.runNow();
    } catch {
      // retries are scheduled; meanwhile the last good copy
      await this.fromFile();
    }
    if (this.opts.scheduler)
      this.opts.scheduler.cron('metadata-refresh', this.opts.refreshCron, () => this.reloads.request());
    else
      this.task = cron.schedule(this.opts.refreshCron, () => this.reloads.request(), {
        noOverlap: true,
        name: 'metadata-refresh',
      });
    this.listenLoopDone = this.listenLoop();
  }

  private async fromFile(): Promise<void> {
    try {
      const s = await readSnapshotFile(this.filePath, this.opts.log);
      // absent, or untrusted (warned there): start as if there were none
      if (!s) throw new Error('no usable metadata.json');
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

  private async loadOnce(): Promise<void> {
    const { log } = this.opts;
    const t0 = performance.now();
    let snapshot: MetadataSnapshot;
    try {
      snapshot = await loadSnapshot(this.pool!);
    } catch (err) {
      const message = (err as Error).message;
      if (this.lastError === null)
        log.warn({ err: message }, 'metadata load failed; keeping the last good copy and retrying');
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
    await saveSnapshotFile(this.filePath, s);
  }

  private async listenLoop(): Promise<void> {
    const reconnect = retryPolicy('postgresReconnect');
    let attempt = 0;
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
        client.on('notification', () => {
          this.notifications++;
          this.reloads.request();
        });
        await client.query(`LISTEN ${NOTIFY_CHANNEL}`);
        this.listening = true;
        this.opts.log.debug({ first, lastError: this.lastError }, 'metadata listener up');
        if (!first) this.opts.log.info('metadata listener reconnected');
        // changes made while nobody listened (or a start that fell back to metadata.json)
        // (PostgreSQL answers again: a retry waiting out its backoff goes now)
        if (!first || this.lastError !== null) this.reloads.request(true);
        first = false;
        attempt = 0;
        await closed;
      } catch (err) {
        this.opts.log.debug({ err: (err as Error).message, attempt }, 'metadata listener cannot connect');
      }
      this.listening = false;
      // end() on a client that already ended never settles in pg: only end a live one
      if (!ended) await client.end().catch(() => {});
      if (this.stopped) break;
      await this.sleeps.sleep(reconnect.delayMs(++attempt), true);
    }
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
    await this.task?.destroy();
    this.opts.scheduler?.stop('metadata-refresh');
    this.sleeps.wake(true);
    void this.listener?.end().catch(() => {});
    await this.reloads.stop();
    await this.listenLoopDone;
    await this.pool?.end().catch(() => {});
  }
}
