import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import pg from 'pg';
import type { Logger } from 'pino';
import type { BackslashMode } from '../ingest/lineProtocol.js';
import type { Reading } from '../ingest/reading.js';
import type { DurableLog } from '../pipeline/durableLog.js';
import { readFileNoFollow, writeFileAtomicPrivate } from '../safeFs.js';
import type { Scheduler } from '../scheduler.js';

import { RollupAggregator } from './rollups.js';
import { flushRollups, rollupOffset } from './store.js';

export const ROLLUP_SINK = 'rollups';

export interface RollupSyncOptions {
  readonly url: string;
  readonly dataDir: string;
  readonly flushIntervalMs: number;
  readonly durableLog: DurableLog;
  readonly backslashMode: BackslashMode;
  readonly log: Logger;
  /** roll-up rows (series × hour) held in memory at most (alerts.maxSeries) */
  readonly maxRows?: number;
  /** a reading not counted because maxRows rows are held */
  readonly onUntracked?: () => void;
  /** runs the periodic flush (job "rollups-flush"); none: a private timer (tests) */
  readonly scheduler?: Scheduler;
}

/**
 * Feeds sensor_rollups_hourly from every accepted reading. Exactly once per
 * reading across restarts and several instances: each flush merges the rows
 * and stores this instance's durable-log offset in the same transaction; on
 * start the readings of the log past that offset are counted again from the
 * log's records, and nothing before it is. PostgreSQL being down only delays
 * flushes (rows stay in memory, merged); ingestion never waits for it.
 */
export class RollupSync {
  private readonly agg: RollupAggregator;
  private pool: pg.Pool | null = null;
  private timer: NodeJS.Timeout | null = null;
  private instanceId = '';
  private flushing: Promise<void> | null = null;
  lastError: string | null = null;

  constructor(private readonly opts: RollupSyncOptions) {
    this.agg = new RollupAggregator({ maxRows: opts.maxRows, onUntracked: opts.onUntracked });
  }

  async start(): Promise<void> {
    const { log, durableLog } = this.opts;
    this.instanceId = await instanceId(this.opts.dataDir);
    this.pool = new pg.Pool({
      connectionString: this.opts.url,
      max: 1,
      connectionTimeoutMillis: 5000,
      statement_timeout: 30_000,
    });
    this.pool.on('error', () => {});
    let from: number;
    try {
      from = (await rollupOffset(this.pool, this.instanceId)) ?? durableLog.committed(ROLLUP_SINK);
    } catch (err) {
      // not knowing PostgreSQL's word, the local copy of the offset is the best guess
      from = durableLog.committed(ROLLUP_SINK);
      log.warn(
        { err: (err as Error).message },
        'roll-ups: PostgreSQL unreachable at start; counting from the local offset',
      );
    }
    if (from < durableLog.firstOffset) {
      log.warn(
        { from, firstOffset: durableLog.firstOffset },
        'roll-ups: part of the log they needed is gone; those readings are not in the roll-ups',
      );
      from = durableLog.firstOffset;
    }
    const replayed = await this.replay(from, durableLog.endOffset);
    if (replayed) log.info({ records: replayed }, 'roll-ups: counted the readings not yet in PostgreSQL');
    this.agg.offset = durableLog.endOffset;
    if (this.opts.scheduler)
      this.opts.scheduler.every('rollups-flush', this.opts.flushIntervalMs, () => this.flush());
    else {
      this.timer = setInterval(() => void this.flush(), this.opts.flushIntervalMs);
      this.timer.unref();
    }
  }

  private async replay(from: number, to: number): Promise<number> {
    let n = 0;
    let at = from;
    while (at < to) {
      const records = await this.opts.durableLog.read(at, 4 * 1024 * 1024);
      if (records.length === 0) break;
      for (const r of records) {
        if (r.start >= to) return n;
        this.agg.addLines(r.record.lines, this.opts.backslashMode);
        at = r.end;
        n++;
      }
    }
    return n;
  }

  /** Called by the ingress right after a record with these readings went into the log. */
  record(readings: readonly Reading[], logEnd: number): void {
    for (const r of readings) this.agg.add(r);
    this.agg.offset = logEnd;
  }

  flush(): Promise<void> {
    this.flushing ??= this.flushOnce().finally(() => {
      this.flushing = null;
    });
    return this.flushing;
  }

  private async flushOnce(): Promise<void> {
    const { rows, offset } = this.agg.take();
    if (rows.length === 0 && offset <= this.opts.durableLog.committed(ROLLUP_SINK)) return;
    try {
      await flushRollups(this.pool!, this.instanceId, rows, offset);
      this.opts.durableLog.commit(ROLLUP_SINK, offset);
      if (this.lastError) this.opts.log.info('roll-ups flush again');
      this.lastError = null;
    } catch (err) {
      this.agg.restore(rows);
      if (!this.lastError)
        this.opts.log.warn(
          { err: (err as Error).message, rows: rows.length },
          'roll-ups flush failed; kept in memory, will retry',
        );
      this.lastError = (err as Error).message;
    }
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.opts.scheduler?.stop('rollups-flush');
    await this.flush();
    await this.pool?.end().catch(() => {});
  }
}

/** A stable id per data directory: several instances each count their own log. */
async function instanceId(dataDir: string): Promise<string> {
  const path = join(dataDir, 'instance-id');
  try {
    return (await readFileNoFollow(path, 'utf8')).trim();
  } catch {
    // missing, or not the daemon's own file (a planted link): a fresh id, written 0600 in its place
    const id = randomUUID();
    await writeFileAtomicPrivate(path, `${id}\n`);
    return id;
  }
}
