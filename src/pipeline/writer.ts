import type { Logger } from 'pino';
import type { Metrics } from '../metrics.js';
import type { RetryPolicy } from '../retry.js';
import type { Sink, WriteResult } from '../sinks/sink.js';
import type { DeadLetterRecord } from './deadLetter.js';

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
  /**
   * While writes fail, sink.ping() every this often; when the server answers
   * again after not answering, every sleeping retry is woken (contract section
   * 7: writing resumes within 5 s). 0: no probe.
   */
  readonly probeIntervalMs?: number;
}

interface Sleeper {
  readonly wake: () => void;
  /** false for a Retry-After wait: the server asked for it, a probe must not cut it short */
  readonly wakeable: boolean;
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
  private readonly sleepers = new Set<Sleeper>();
  private aborted = false;
  private probing: Promise<void> | null = null;
  /** the sink did not answer (a network error or a failed ping) since it last did */
  private sinkDown = false;
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
          // no status: the server did not answer at all, so a ping that succeeds means it is back
          if (result.status === undefined) this.sinkDown = true;
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
          const sleep = this.sleep(delay, result.retryAfterMs === undefined);
          this.startProbe();
          await sleep;
        }
      }
    }
  }

  private written(points: readonly Point[]): void {
    const { metrics } = this.deps;
    metrics.pointsWritten.inc(undefined, points.length);
    const now = this.now();
    this.sinkDown = false;
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

  private sleep(ms: number, wakeable = false): Promise<void> {
    return new Promise((resolve) => {
      const sleeper: Sleeper = {
        wakeable,
        wake: () => {
          clearTimeout(timer);
          this.sleepers.delete(sleeper);
          resolve();
        },
      };
      const timer = setTimeout(sleeper.wake, ms);
      this.sleepers.add(sleeper);
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
    const waiting = () => [...this.sleepers].some((s) => s.wakeable);
    this.probing = (async () => {
      while (!this.aborted && waiting()) {
        await this.sleep(every);
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
        const woken = [...this.sleepers].filter((s) => s.wakeable);
        this.deps.log.info(
          { sink: this.deps.sink.name, retries: woken.length },
          'sink answers again; retrying now',
        );
        for (const s of woken) s.wake();
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
    for (const s of [...this.sleepers]) s.wake();
  }
}
