import PQueue from 'p-queue';
import type { Logger } from 'pino';
import { retryPolicy } from '../retry.js';
import { BatchPool, LineBatch } from './batch.js';
import { type DurableLog, LINE_FRAME, type StoredRecord } from './durableLog.js';
import { type BatchWriter, ShutdownAbort } from './writer.js';

export interface PipelineOptions {
  readonly batchSize: number;
  readonly flushIntervalMs: number;
  readonly maxInflightBatches: number;
  /** name under which the durable log keeps this sink's committed offset */
  readonly sinkName: string;
  /** a segment could not be read (EMFILE, EIO): retried after a short backoff; this counts and logs it */
  readonly onReadError?: (err: unknown) => void;
}

const READ_RETRY = retryPolicy('diskIo');

/**
 * Between the durable log and the writer. Every accepted record is in the log
 * first; the pipeline turns records into batches and commits the log as
 * batches finish (in order), so the committed offset only moves past a record
 * once the sink took (or dead-lettered) every line of it.
 *
 * Two ways in, one order:
 * - tail: while the pipeline keeps up, the ingress hands it each record's
 *   points straight from memory (offer), no disk read;
 * - catch-up: after a restart, or when the sink is slower than the input
 *   (outage, overload), the points are not kept in memory at all: they wait in
 *   the log, and a reader feeds batches from the segment files as room frees
 *   up, oldest first, until it reaches the end and tail mode resumes.
 * Memory is therefore bounded by (maxInflightBatches × 9 + 1) batches, whatever
 * the load or the length of an outage; the disk budget is the log's. (Eight
 * queued batches per writer, not fewer: a deeper queue keeps a fast stream in
 * tail mode through short stalls, and reading back from disk costs CPU.)
 * A batch is its body's bytes plus three numbers per line (batch.ts): no JS
 * object per waiting point.
 * The catch-up reader keeps only one queued batch per writer (plus one read):
 * the writer needs its next round in hand, not eight, and under a QoS 0 flood
 * the 32 batches it used to read ahead were most of the heap (issue 15).
 * A batch written while an earlier one is still being written waits in order
 * for the commit without its body (LineBatch.release).
 */
export class Pipeline {
  private batch: LineBatch | null = null;
  /** written batches' storage for the next ones */
  private readonly pool = new BatchPool();
  /** size of the last batch cut, to size the next one */
  private readonly lastCut = { lines: 64, bytes: 64 * 200 };
  private timer: NodeJS.Timeout | null = null;
  private readonly queue: PQueue;
  private readonly maxQueued: number;
  private readonly fifo: LineBatch[] = [];
  private nextOffset = 0;
  private catchup: Promise<void> | null = null;
  private catchupReceivedAt: number | null = null;
  private stopping = false;
  private lostOnShutdown = 0;
  private queuedPoints = 0;
  private committed = 0;
  private progressed: Promise<void> | null = null;
  /** times the pipeline fell behind the log and read it back from disk */
  catchups = 0;
  private onProgress: (() => void) | null = null;

  constructor(
    private readonly opts: PipelineOptions,
    private readonly writer: BatchWriter,
    private readonly log: DurableLog,
    private readonly logger: Logger,
  ) {
    this.queue = new PQueue({ concurrency: opts.maxInflightBatches });
    this.maxQueued = opts.maxInflightBatches * 8;
  }

  /** Resume from the committed offset: whatever the log holds beyond it is sent again. */
  start(): void {
    this.committed = Math.max(this.log.committed(this.opts.sinkName), this.log.firstOffset);
    this.nextOffset = this.committed;
    if (this.nextOffset < this.log.endOffset) {
      this.logger.info(
        { from: this.nextOffset, to: this.log.endOffset, bytes: this.log.endOffset - this.nextOffset },
        'replaying the durable log',
      );
      this.startCatchup();
    }
  }

  /** Points in memory (batching, queued, being written, written but not yet committed). */
  get backlog(): number {
    // every batch not yet written holds its lines (a written one released its body)
    let n = this.batch?.count ?? 0;
    for (const b of this.fifo) if (!b.done) n += b.count;
    return n;
  }

  /** bytes of the durable log not yet written to the sink */
  get bytesBehind(): number {
    return this.log.endOffset - this.committed;
  }

  get catchingUp(): boolean {
    return this.catchup !== null;
  }

  /** Receipt time of the oldest reading not yet written, or null. */
  get oldestUnsentMs(): number | null {
    const head = this.fifo.find((b) => !b.done && b.count > 0);
    const current = this.batch && this.batch.count > 0 ? this.batch.receivedAt(0) : undefined;
    const candidates = [head?.receivedAt(0), this.catchupReceivedAt, current].filter(
      (x): x is number => typeof x === 'number',
    );
    return candidates.length ? Math.min(...candidates) : null;
  }

  private get full(): boolean {
    return this.queue.size >= this.maxQueued;
  }

  /** the catch-up reader's read-ahead: one queued batch per writer */
  private get readAheadFull(): boolean {
    return this.queue.size >= this.opts.maxInflightBatches;
  }

  /**
   * As many batches wait as are being written: the writer has its next round
   * in hand, and admission control holds publishers rather than queue more
   * (each queued point is a live object the GC walks; the rest of the queue
   * is headroom that keeps the pipeline in tail mode).
   */
  get pressed(): boolean {
    return this.queue.size >= this.opts.maxInflightBatches;
  }

  /** The sink's last write failed (an outage): the log absorbs the input meanwhile. */
  get sinkFailing(): boolean {
    return this.writer.failingSince !== null;
  }

  /** Resolves when the next batch finishes (shared by every caller). */
  progress(): Promise<void> {
    this.progressed ??= new Promise<void>((resolve) => {
      this.onProgress = resolve;
    });
    return this.progressed;
  }

  /**
   * A record [start, end) was just appended to the log with these lines. Taken
   * from memory when the pipeline is level with the log; otherwise left for
   * the catch-up reader. Never blocks: the publisher waits on the log, not here.
   */
  offer(lines: readonly string[], receivedAtMs: number, start: number, end: number): void {
    if (this.stopping) return;
    if (this.catchup === null && start === this.nextOffset && !this.full) {
      this.take(lines, receivedAtMs, start, end);
      return;
    }
    this.startCatchup();
  }

  /**
   * The same as offer, for a record encoded in place (DurableLog.appendEncoded):
   * its `count` lines are framed (u32 length + bytes) in buf from `linesAt`,
   * and are copied into the batch as bytes.
   */
  offerFramed(
    buf: Buffer,
    linesAt: number,
    count: number,
    receivedAtMs: number,
    start: number,
    end: number,
  ): void {
    if (this.stopping) return;
    if (this.catchup !== null || start !== this.nextOffset || this.full) {
      this.startCatchup();
      return;
    }
    let p = linesAt;
    for (let i = 0; i < count; i++) {
      const n = buf.readUInt32LE(p);
      this.open().addBytes(buf, p + LINE_FRAME, p + LINE_FRAME + n, receivedAtMs, start);
      p += LINE_FRAME + n;
      if (this.batch!.count >= this.opts.batchSize) this.cut();
    }
    this.took(end);
  }

  /** The batch lines go into, sized like the last batch cut (a small one at first: most flush on the timer at low rates). */
  private open(): LineBatch {
    this.batch ??= new LineBatch(
      Math.min(this.opts.batchSize, this.lastCut.lines + 16),
      this.lastCut.bytes + 4096,
      this.pool,
    );
    return this.batch;
  }

  private take(lines: readonly string[], receivedAtMs: number, start: number, end: number): void {
    for (const line of lines) {
      this.open().add(line, receivedAtMs, start);
      if (this.batch!.count >= this.opts.batchSize) this.cut();
    }
    this.took(end);
  }

  private took(end: number): void {
    this.nextOffset = end;
    if (this.batch && this.batch.count > 0) {
      // the record's end goes with the batch holding its last line
      this.batch.end = end;
      if (this.timer === null) this.timer = setTimeout(() => this.cut(), this.opts.flushIntervalMs);
    } else {
      // the last line closed a batch exactly: that batch carries the end
      const last = this.fifo.at(-1);
      if (last && last.end < end) last.end = end;
    }
  }

  private startCatchup(): void {
    if (this.catchup || this.stopping) return;
    this.catchups++;
    this.catchup = this.catchupLoop()
      .catch((err: unknown) => this.logger.error({ err }, 'durable log reader failed'))
      .finally(() => {
        this.catchup = null;
        this.catchupReceivedAt = null;
        // records appended while the reader was finishing are picked up by a new round
        if (!this.stopping && this.nextOffset < this.log.endOffset) this.startCatchup();
      });
  }

  private async catchupLoop(): Promise<void> {
    const readBytes = Math.max(256 * 1024, this.opts.batchSize * 256);
    let readFailures = 0;
    while (!this.stopping && this.nextOffset < this.log.endOffset) {
      if (this.readAheadFull) {
        await this.queue.onSizeLessThan(this.opts.maxInflightBatches);
        continue;
      }
      if (this.nextOffset >= this.log.written) {
        await this.log.waitWritten(this.nextOffset);
        continue;
      }
      const from = Math.max(this.nextOffset, this.log.firstOffset);
      let records: StoredRecord[];
      try {
        records = await this.log.read(from, readBytes);
        readFailures = 0;
      } catch (err) {
        // opening a segment needs a descriptor: under fd exhaustion wait and read again
        // (without this the reader would fail, restart at once and spin)
        readFailures++;
        if (this.opts.onReadError) this.opts.onReadError(err);
        else this.logger.warn({ err }, 'durable log read failed; retrying');
        await new Promise((r) => setTimeout(r, READ_RETRY.delayMs(readFailures)));
        continue;
      }
      if (records.length === 0) {
        // nothing readable at this offset (a gap left by a dropped corrupt record): skip to what is written
        this.logger.warn({ from, to: this.log.written }, 'durable log: skipping unreadable bytes');
        this.nextOffset = this.log.written;
        continue;
      }
      for (const r of records) {
        if (this.stopping) return;
        this.catchupReceivedAt = r.record.receivedAtMs;
        this.take(r.record.lines, r.record.receivedAtMs, r.start, r.end);
      }
    }
  }

  private cut(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const batch = this.batch;
    if (batch === null || batch.count === 0) return;
    this.batch = null;
    this.lastCut.lines = batch.count;
    this.lastCut.bytes = batch.bytes;
    this.fifo.push(batch);
    this.queuedPoints += batch.count;
    this.queue
      .add(() => this.writer.deliver(batch))
      .then(
        () => {
          this.queuedPoints -= batch.count;
          batch.done = true;
          batch.release();
          this.advance();
        },
        (err: unknown) => {
          this.queuedPoints -= batch.count;
          if (err instanceof ShutdownAbort) {
            this.lostOnShutdown += batch.count;
            return;
          }
          this.logger.error({ err }, 'batch delivery failed unexpectedly');
        },
      );
  }

  /** Commit the log over the prefix of finished batches. */
  private advance(): void {
    while (this.fifo[0]?.done) {
      const b = this.fifo.shift()!;
      if (b.end > this.committed) this.committed = b.end;
    }
    this.log.commit(this.opts.sinkName, this.committed);
    const wake = this.onProgress;
    this.progressed = this.onProgress = null;
    wake?.();
  }

  /**
   * Write what is in memory until the deadline, then stop. Nothing is lost by
   * stopping early: whatever was not written stays in the log for the next start.
   */
  async drain(deadlineMs: number): Promise<{ unwritten: number; logBehind: number }> {
    this.stopping = true;
    this.cut();
    const idle = Promise.all([this.queue.onIdle(), this.catchup]);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), Math.max(0, deadlineMs - Date.now()));
    });
    const outcome = await Promise.race([idle.then(() => 'idle' as const), timeout]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      this.queue.clear();
      this.writer.abort();
      await this.queue.onIdle();
    }
    this.cut();
    return {
      unwritten: this.lostOnShutdown + this.queuedPoints,
      logBehind: this.log.endOffset - this.committed,
    };
  }
}
