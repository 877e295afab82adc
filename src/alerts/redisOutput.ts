import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Metrics } from '../metrics.js';
import { Outage, type RetryPolicy, Sleeps } from '../retry.js';
import { type AlertEvent, alertField } from './evaluator.js';

// Alert events into Redis (contract section 11), off the ingest path: a
// bounded queue drained in pipelined batches, retried with backoff while
// Redis is down or slow. When the queue overflows the oldest events are
// dropped (counted), and the active hash fields they touched are marked:
// once Redis answers again those fields are rewritten from the live alert
// state, so alerts:active:* ends up right even when notifications were lost.

export const STREAM_KEY = 'alerts:stream';
const BATCH = 200;

export interface AlertRedisOptions {
  readonly redis: Redis;
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly retry: RetryPolicy;
  readonly maxQueued: number;
  /** the current raised event of a hash field, or null: used to repair fields whose events were dropped */
  readonly activeEvent: (building: string, field: string) => AlertEvent | null;
  /** cluster mode: every event passes the cluster's gate, which also delivers it (src/alerts/clusterState.ts) */
  readonly gate?: {
    send(batch: readonly AlertEvent[]): Promise<void>;
    repair(
      fields: ReadonlyArray<{ building: string; field: string; id: string }>,
      active: (building: string, field: string) => AlertEvent | null,
    ): Promise<void>;
  };
}

export class AlertRedisOutput {
  private queue: AlertEvent[] = [];
  private head = 0;
  private readonly dirty = new Map<string, { building: string; field: string; id: string }>();
  private running: Promise<void> | null = null;
  private stopped = false;
  private readonly sleeps = new Sleeps();
  /** since when Redis has been failing, for the recovery log line */
  private readonly outage: Outage;

  constructor(private readonly opts: AlertRedisOptions) {
    this.outage = new Outage(opts.log, 'Redis alert delivery');
  }

  get queued(): number {
    return this.queue.length - this.head;
  }

  deliver(events: readonly AlertEvent[]): void {
    for (const e of events) {
      if (this.queued >= this.opts.maxQueued) {
        const lost = this.queue[this.head++]!;
        this.opts.metrics.alertDeliveryDropped.inc({ output: 'redis' });
        this.markDirty(lost);
      }
      this.queue.push(e);
    }
    this.kick();
  }

  /** Active alerts written to the hash again (after a restart, and every minute): HSET is idempotent. */
  reassert(active: readonly AlertEvent[]): void {
    for (const e of active) this.markDirty(e);
    this.kick();
  }

  private markDirty(e: AlertEvent): void {
    const field = alertField(e);
    this.dirty.set(`${e.building_id}\n${field}`, { building: e.building_id, field, id: e.id });
  }

  private kick(): void {
    if (this.stopped) return;
    this.running ??= this.run().finally(() => {
      this.running = null;
      if (this.queued || this.dirty.size) this.kick();
    });
  }

  private async run(): Promise<void> {
    while (!this.stopped && (this.queued || this.dirty.size)) {
      const batch = this.queue.slice(this.head, this.head + BATCH);
      const repairs = batch.length ? [] : [...this.dirty.values()].slice(0, BATCH);
      try {
        if (batch.length) await this.send(batch);
        else await this.repair(repairs);
        if (batch.length) {
          this.head += batch.length;
          if (this.head > 4096 && this.head * 2 > this.queue.length) {
            this.queue = this.queue.slice(this.head);
            this.head = 0;
          }
        } else for (const r of repairs) this.dirty.delete(`${r.building}\n${r.field}`);
        this.outage.ok({ queued: this.queued });
      } catch (err) {
        this.opts.metrics.alertDeliveryRetries.inc({ output: 'redis' });
        const attempt = this.outage.fail(err, { queued: this.queued });
        await this.sleeps.sleep(this.opts.retry.delayMs(attempt), true);
      }
    }
  }

  private async send(batch: readonly AlertEvent[]): Promise<void> {
    if (this.opts.gate) return this.opts.gate.send(batch);
    const p = this.opts.redis.pipeline();
    for (const e of batch) {
      const body = JSON.stringify(e);
      const field = alertField(e);
      p.publish(`alerts:${e.building_id}`, body);
      p.xadd(STREAM_KEY, 'MAXLEN', '~', '100000', '*', 'event', body);
      if (e.state === 'raised') p.hset(`alerts:active:${e.building_id}`, field, body);
      else p.hdel(`alerts:active:${e.building_id}`, field);
      p.set(`notification:${e.building_id}`, body, 'EX', 86400);
    }
    await exec(p);
  }

  private async repair(
    fields: ReadonlyArray<{ building: string; field: string; id: string }>,
  ): Promise<void> {
    if (this.opts.gate) return this.opts.gate.repair(fields, this.opts.activeEvent);
    const p = this.opts.redis.pipeline();
    for (const { building, field } of fields) {
      const active = this.opts.activeEvent(building, field);
      if (active) p.hset(`alerts:active:${building}`, field, JSON.stringify(active));
      else p.hdel(`alerts:active:${building}`, field);
    }
    await exec(p);
  }

  /** Deliver what is queued until the deadline; what is left is logged (the active hash is repaired at next start). */
  async stop(deadline: number): Promise<void> {
    const left = () => this.queued + this.dirty.size;
    while (left() && Date.now() < deadline && !this.outage.failing) {
      this.sleeps.wake();
      await new Promise((r) => setTimeout(r, 20));
    }
    this.stopped = true;
    this.sleeps.wake(true);
    await this.running;
    if (left())
      this.opts.log.warn({ undelivered: left() }, 'alert events not delivered to Redis at shutdown');
  }
}

async function exec(p: ReturnType<Redis['pipeline']>): Promise<void> {
  const results = await p.exec();
  const failed = results?.find(([err]) => err);
  if (failed) throw failed[0];
}
