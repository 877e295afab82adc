import type { Logger } from 'pino';
import type { Metrics } from '../metrics.js';
import { Outage, type RetryPolicy, Sleeps } from '../retry.js';
import type { Sink, WriteResult } from '../sinks/sink.js';
import type { LineBatch } from './batch.js';
import type { DeadLetterRecord } from './deadLetter.js';

/** Where a line came from (its log record): a line the sink refuses is dead-lettered with its message. */
export interface PointSource {
  readonly topic: string;
  readonly clientId: string | null;
  /**
   * The message as text. Not the Buffer: Aedes hands out payloads that are
   * slices of a whole socket read, and holding one would pin that read in
   * memory for as long as the point waits to be written.
   */
  readonly payload: string;
}

export class ShutdownAbort extends Error {
  readonly code = 'EI_SHUTDOWN_ABORT';
}

export interface WriterDeps {
  readonly sink: Sink;
  readonly retry: RetryPolicy;
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly deadLetter: (r: DeadLetterRecord) => Promise<void>;
  /** the message a refused line came from: its record, read back from the durable log by offset */
  readonly sourceOf: (recordStart: number) => Promise<PointSource | null>;
  readonly now?: () => number;
  /**
   * While writes fail, sink.ping() every this often; when the server answers
   * again after not answering, every sleeping retry is woken (contract section
   * 7: writing resumes within 5 s). 0: no probe.
   */
  readonly probeIntervalMs?: number;
}

/**
 * One batch's write transaction (Telegraf's running_output + buffer semantics):
 *   ok          → every line is written
 *   too_large   → split in halves and write each (413)
 *   reject      → bisect until the bad lines are alone; dead-letter just those
 *   retry       → keep the whole batch, back off (full jitter, Retry-After), try again
 * The promise resolves only when every line is either written or dead-lettered,
 * which is what lets the durable log commit the batch.
 */
export class BatchWriter {
  private readonly now: () => number;
  /** backoff sleeps; a Retry-After wait is not wakeable: the server asked for it, a probe must not cut it short */
  private readonly sleeps = new Sleeps();
  private readonly outage: Outage;
  private aborted = false;
  private probing: Promise<void> | null = null;
  /** the sink did not answer (a network error or a failed ping) since it last did */
  private sinkDown = false;

  constructor(private readonly deps: WriterDeps) {
    this.now = deps.now ?? Date.now;
    // the first failure is logged below with its batch's details; the outage logs the recovery
    this.outage = new Outage(deps.log.child({ sink: deps.sink.name }), 'sink writes', this.now, false);
  }

  /** since when writes fail (null: they do not), for readiness and logs */
  get failingSince(): number | null {
    return this.outage.since;
  }

  get lastError(): string | null {
    return this.outage.lastError;
  }

  /** Lines [from, to) of the batch: written, or dead-lettered line by line, before this resolves. */
  async deliver(batch: LineBatch, from = 0, to = batch.count): Promise<void> {
    const count = to - from;
    if (count <= 0) return;
    let attempt = 0;
    for (;;) {
      if (this.aborted) throw new ShutdownAbort('writer stopped with unwritten points');
      const started = performance.now();
      this.deps.metrics.batchSize.observe(count);
      const result = await this.deps.sink.write(batch.body(from, to), count);
      this.deps.metrics.writeDuration.observe((performance.now() - started) / 1000);
      switch (result.kind) {
        case 'ok':
          this.written(batch, from, to);
          return;
        case 'too_large':
        case 'reject': {
          this.deps.metrics.writeErrors.inc({ kind: result.kind });
          if (count === 1) {
            await this.refuse(batch, from, result);
            return;
          }
          // halves, each its own view of the same buffer: no copy, no re-encoding
          const mid = from + (count >> 1);
          await this.deliver(batch, from, mid);
          await this.deliver(batch, mid, to);
          return;
        }
        case 'retry': {
          attempt++;
          this.deps.metrics.writeErrors.inc({ kind: result.status ? `http_${result.status}` : 'network' });
          this.deps.metrics.writeRetries.inc();
          this.outage.fail(result.message);
          const delay = this.deps.retry.delayMs(attempt, result.retryAfterMs);
          // no status: the server did not answer at all, so a ping that succeeds means it is back
          if (result.status === undefined) this.sinkDown = true;
          if (attempt === 1 || attempt % 10 === 0) {
            this.deps.log.warn(
              {
                sink: this.deps.sink.name,
                status: result.status,
                attempt,
                delayMs: Math.round(delay),
                points: count,
              },
              `write failed, will retry: ${result.message.slice(0, 300)}`,
            );
          }
          const sleep = this.sleeps.sleep(delay, result.retryAfterMs === undefined);
          this.startProbe();
          await sleep;
        }
      }
    }
  }

  private written(batch: LineBatch, from: number, to: number): void {
    const { metrics } = this.deps;
    metrics.pointsWritten.inc(undefined, to - from);
    const now = this.now();
    this.sinkDown = false;
    for (let i = from; i < to; i++) metrics.ingestLatency.observe((now - batch.receivedAt(i)) / 1000);
    this.outage.ok();
  }

  private async refuse(
    batch: LineBatch,
    i: number,
    result: Extract<WriteResult, { kind: 'reject' | 'too_large' }>,
  ): Promise<void> {
    const status = result.kind === 'too_large' ? 413 : result.status;
    // the log holds the record until this batch is committed; null only if it was cut off as corrupt
    const source = await this.deps.sourceOf(batch.record(i)).catch(() => null);
    const topic = source?.topic ?? '';
    this.deps.metrics.messagesRejected.inc({ reason: 'sink_rejected' });
    this.deps.log.warn({ topic, status }, `sink refused a line: ${result.message.slice(0, 300)}`);
    await this.deps.deadLetter({
      receivedAtMs: batch.receivedAt(i),
      clientId: source?.clientId ?? null,
      topic,
      reason: 'sink_rejected',
      detail: `${this.deps.sink.name} ${status}: ${result.message.slice(0, 500)}`,
      // without its record, the line itself is what there is to keep
      payload: source?.payload ?? batch.line(i),
    });
  }

  /**
   * One probe loop while some retry sleeps: a cheap round trip (InfluxDB
   * /ping, the file sink's writability check) every probeIntervalMs. A
   * backoff sleep can reach 30 s; the probe is what lets writing resume within
   * a few seconds of the server answering, without retrying whole batches
   * against a server that is still down.
   */
  private startProbe(): void {
    const every = this.deps.probeIntervalMs ?? 0;
    if (every <= 0 || this.probing) return;
    const waiting = () => this.sleeps.waiting;
    this.probing = (async () => {
      while (!this.aborted && waiting()) {
        await this.sleeps.sleep(every);
        if (this.aborted || !waiting()) break;
        let ok = false;
        try {
          await this.deps.sink.ping();
          ok = true;
        } catch {
          // still down: the next probe will tell
        }
        this.deps.metrics.sinkProbes.inc({ result: ok ? 'ok' : 'failed' });
        if (!ok) {
          this.sinkDown = true;
          continue;
        }
        if (!this.sinkDown) continue; // it answers pings but refuses writes (5xx, 429, 401): keep backing off
        this.sinkDown = false;
        const woken = this.sleeps.wake();
        this.deps.log.info({ sink: this.deps.sink.name, retries: woken }, 'sink answers again; retrying now');
      }
    })()
      .catch((err: unknown) => this.deps.log.error({ err }, 'sink probe failed unexpectedly'))
      .finally(() => {
        this.probing = null;
      });
  }

  /** Wake every backoff sleep and make pending deliveries give up (shutdown deadline). */
  abort(): void {
    this.aborted = true;
    this.sleeps.wake(true);
  }
}
