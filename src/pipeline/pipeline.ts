import PQueue from 'p-queue';
import type { Logger } from 'pino';
import { type BatchWriter, type Point, ShutdownAbort } from './writer.js';

export interface PipelineOptions {
  readonly batchSize: number;
  readonly flushIntervalMs: number;
  readonly maxInflightBatches: number;
}

/**
 * Batching in front of the writer. A batch is cut when it reaches batchSize or
 * when its first point has waited flushIntervalMs. At most maxInflightBatches
 * writes run at once and as many more wait; beyond that accept() hands back a
 * promise, and the broker withholds the publisher's acknowledgement (and stops
 * reading its socket) until it settles: memory stays bounded at any offered load.
 */
export class Pipeline {
  private batch: Point[] = [];
  private timer: NodeJS.Timeout | null = null;
  private readonly queue: PQueue;
  private readonly maxQueued: number;
  private lostOnShutdown = 0;
  /** one shared wait while the queue is full, however many publishers are waiting */
  private room: Promise<void> | null = null;
  /** points in batches handed to the queue and not yet finished */
  private queuedPoints = 0;

  constructor(
    private readonly opts: PipelineOptions,
    private readonly writer: BatchWriter,
    private readonly log: Logger,
  ) {
    this.queue = new PQueue({ concurrency: opts.maxInflightBatches });
    this.maxQueued = opts.maxInflightBatches * 2;
  }

  /** Points waiting in memory (batching, queued and being written). */
  get backlog(): number {
    return this.batch.length + this.queuedPoints;
  }

  get full(): boolean {
    return this.queue.size >= this.maxQueued;
  }

  /** Accepts the points; returns a promise only when the caller must wait for room. */
  accept(points: readonly Point[]): Promise<void> | undefined {
    for (const p of points) {
      this.batch.push(p);
      if (this.batch.length >= this.opts.batchSize) this.cut();
    }
    if (this.batch.length > 0 && this.timer === null) {
      this.timer = setTimeout(() => this.cut(), this.opts.flushIntervalMs);
    }
    if (!this.full) return undefined;
    this.room ??= this.queue.onSizeLessThan(this.maxQueued).then(() => {
      this.room = null;
    });
    return this.room;
  }

  private cut(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.batch.length === 0) return;
    const batch = this.batch;
    this.batch = [];
    this.queuedPoints += batch.length;
    this.queue
      .add(() => this.writer.deliver(batch))
      .then(
        () => {
          this.queuedPoints -= batch.length;
        },
        (err: unknown) => {
          this.queuedPoints -= batch.length;
          if (err instanceof ShutdownAbort) {
            this.lostOnShutdown += batch.length;
            return;
          }
          this.log.error({ err }, 'batch delivery failed unexpectedly');
        },
      );
  }

  /** Write everything buffered; give up at the deadline and report how many points were left. */
  async drain(deadlineMs: number): Promise<{ unwritten: number }> {
    this.cut();
    const idle = this.queue.onIdle();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), Math.max(0, deadlineMs - Date.now()));
    });
    const outcome = await Promise.race([idle.then(() => 'idle' as const), timeout]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      // Drop the batches that never started (their points stay counted in
      // queuedPoints), make the running ones give up (counted in lostOnShutdown).
      this.queue.clear();
      this.writer.abort();
      await this.queue.onIdle();
      return { unwritten: this.lostOnShutdown + this.queuedPoints };
    }
    return { unwritten: this.lostOnShutdown };
  }
}
