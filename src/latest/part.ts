import type { Component, NodeContext } from '../component.js';
import type { ReadingConsumer } from '../ingest/consumer.js';
import type { Reading } from '../ingest/reading.js';
import type { RedisPart } from '../redis.js';
import { RedisLatestCache } from './redisLatest.js';

/**
 * Latest readings in Redis (contract section 16): a consumer that keeps the
 * newest reading per series in memory (no I/O on the ingest path) and a
 * scheduled job that writes them, coalesced, every redis.latestIntervalMs.
 */
export class LatestCachePart implements Component, ReadingConsumer {
  readonly name = 'latest-cache';
  private cache: RedisLatestCache | null = null;

  constructor(
    private readonly ctx: NodeContext,
    private readonly redis: RedisPart,
  ) {}

  start(): void {
    const { cfg, metrics, rateLog, scheduler } = this.ctx;
    const redis = this.redis.client;
    if (!redis || !cfg.redis.latestCache) return;
    const cache = new RedisLatestCache({
      redis,
      intervalMs: cfg.redis.latestIntervalMs,
      maxPending: cfg.redis.latestMaxPending,
      onDrop: (n) => {
        metrics.latestCacheDropped.inc(undefined, n);
        rateLog.warn(
          'latest-cache-full',
          { maxPending: cfg.redis.latestMaxPending },
          'redis.latestMaxPending reached; readings of new series are not cached in cache:latest:*',
        );
      },
      onError: (err) => {
        metrics.latestCacheErrors.inc();
        rateLog.warn(
          'latest-cache-error',
          { err: (err as Error)?.message },
          'cache:latest:* write failed; retried with the next flush',
        );
      },
      onWrite: (buildings) => metrics.latestCacheWrites.inc(undefined, buildings),
    });
    this.cache = cache;
    scheduler.every('latest-cache-flush', cfg.redis.latestIntervalMs, () => cache.flush());
  }

  consume(readings: readonly Reading[]): void {
    this.cache?.record(readings);
  }

  /** one last write of what is pending */
  async stop(): Promise<void> {
    if (!this.cache) return;
    this.ctx.scheduler.stop('latest-cache-flush');
    await this.cache.stop();
  }
}
