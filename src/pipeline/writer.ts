import type { Logger } from 'pino';
import type { Metrics } from '../http/metrics.js';
import type { Sink, WriteResult } from '../sinks/sink.js';
import type { DeadLetterRecord } from './deadLetter.js';
import type { RetryPolicy } from './retry.js';

/** Where a point came from: kept so a line the sink refuses can be dead-lettered with its message. */
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

export interface Point {
  readonly line: string;
  readonly receivedAtMs: number;
  readonly source: PointSource;
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
  readonly now?: () => number;
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
  private abortWaiters = new Set<() => void>();
  private aborted = false;
  /** consecutive failed attempts across batches, for readiness and logs */
  failingSince: number | null = null;
  lastError: string | null = null;
  /** retries since the current outage began (reported when it ends) */
  private outageRetries = 0;

  constructor(private readonly deps: WriterDeps) {
    this.now = deps.now ?? Date.now;
  }

  async deliver(points: readonly Point[]): Promise<void> {
    if (points.length === 0) return;
    let attempt = 0;
    for (;;) {
      if (this.aborted) throw new ShutdownAbort('writer stopped with unwritten points');
      const started = performance.now();
      this.deps.metrics.batchSize.observe(points.length);
      const result = await this.deps.sink.write(points.map((p) => p.line));
      this.deps.metrics.writeDuration.observe((performance.now() - started) / 1000);
      switch (result.kind) {
        case 'ok':
          this.written(points);
          return;
        case 'too_large':
        case 'reject':
          this.deps.metrics.writeErrors.inc({ kind: result.kind });
          if (points.length === 1) {
            await this.refuse(points[0]!, result);
            return;
          }
          await this.deliver(points.slice(0, points.length >> 1));
          await this.deliver(points.slice(points.length >> 1));
          return;
        case 'retry': {
          attempt++;
          this.deps.metrics.writeErrors.inc({ kind: result.status ? `http_${result.status}` : 'network' });
          this.deps.metrics.writeRetries.inc();
          this.failingSince ??= this.now();
          this.outageRetries++;
          this.lastError = result.message;
          const delay = this.deps.retry.delayMs(attempt, result.retryAfterMs);
          if (attempt === 1 || attempt % 10 === 0) {
            this.deps.log.warn(
              {
                sink: this.deps.sink.name,
                status: result.status,
                attempt,
                delayMs: Math.round(delay),
                points: points.length,
              },
              `write failed, will retry: ${result.message.slice(0, 300)}`,
            );
          }
          await this.sleep(delay);
        }
      }
    }
  }

  private written(points: readonly Point[]): void {
    const { metrics } = this.deps;
    metrics.pointsWritten.inc(undefined, points.length);
    const now = this.now();
    for (const p of points) metrics.ingestLatency.observe((now - p.receivedAtMs) / 1000);
    if (this.failingSince !== null) {
      this.deps.log.info(
        { sink: this.deps.sink.name, downForMs: now - this.failingSince, retries: this.outageRetries },
        'writes recovered',
      );
      this.failingSince = null;
      this.outageRetries = 0;
      this.lastError = null;
    }
  }

  private async refuse(
    p: Point,
    result: Extract<WriteResult, { kind: 'reject' | 'too_large' }>,
  ): Promise<void> {
    const status = result.kind === 'too_large' ? 413 : result.status;
    this.deps.metrics.messagesRejected.inc({ reason: 'sink_rejected' });
    this.deps.log.warn(
      { topic: p.source.topic, status },
      `sink refused a line: ${result.message.slice(0, 300)}`,
    );
    await this.deps.deadLetter({
      receivedAtMs: p.receivedAtMs,
      clientId: p.source.clientId,
      topic: p.source.topic,
      reason: 'sink_rejected',
      detail: `${this.deps.sink.name} ${status}: ${result.message.slice(0, 500)}`,
      payload: p.source.payload,
    });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.abortWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.abortWaiters.add(done);
    });
  }

  /** Wake every backoff sleep and make pending deliveries give up (shutdown deadline). */
  abort(): void {
    this.aborted = true;
    for (const w of [...this.abortWaiters]) w();
  }
}
