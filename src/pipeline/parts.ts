import type { Component, NodeContext, ReadinessExtra } from '../component.js';
import { redactText } from '../redact.js';
import { jitteredBackoff } from '../retry.js';
import type { SinkPart } from '../sinks/part.js';
import { DeadLetterWriter } from './deadLetter.js';
import { DrainProgress } from './drainProgress.js';
import { DurableLog, logDir } from './durableLog.js';
import { Pipeline } from './pipeline.js';
import { recordReader } from './recordReader.js';
import { BatchWriter } from './writer.js';

// The pipeline's parts: the dead letter (rejections), the durable log (every
// accepted reading, before its acknowledgement) and the pipeline proper
// (batches from the log to the sink, with retries).

export class DeadLetterPart implements Component {
  readonly name = 'dead-letter';
  writer!: DeadLetterWriter;

  constructor(private readonly ctx: NodeContext) {}

  async start(): Promise<void> {
    const { cfg, metrics } = this.ctx;
    this.writer = new DeadLetterWriter({
      dataDir: cfg.dataDir,
      maxBytes: cfg.pipeline.deadLetterMaxBytes,
      maxFileBytes: cfg.pipeline.deadLetterMaxFileBytes,
      maxQueuedBytes: cfg.pipeline.deadLetterMaxQueuedBytes,
      onError: (err) => this.ctx.ioError('dead_letter_append', err),
      onDrop: (reason, n) => {
        metrics.deadLettersDropped.inc({ reason }, n);
        this.ctx.rateLog.warn(
          `deadletter-${reason}`,
          { reason },
          'dead letter dropped: over its disk budget or queue',
        );
      },
    });
    await this.writer.open();
  }

  async stop(): Promise<void> {
    await this.writer.close();
  }

  registerMetrics(m: NodeContext['metrics']): void {
    const w = this.writer;
    m.counter('energy_ingest_dead_lettered_total', 'records written to DATA_DIR/deadletter', () => w.written);
    m.gauge('energy_ingest_dead_letter_bytes', 'bytes held by DATA_DIR/deadletter', () => w.diskBytes);
    m.counter(
      'energy_ingest_dead_letter_failures_total',
      'rejections that could not be written to the dead letter (disk full?)',
      () => w.failures,
    );
  }
}

export class LogPart implements Component {
  readonly name = 'durable-log';
  log!: DurableLog;

  constructor(
    private readonly ctx: NodeContext,
    /** consumers of the log besides the sink (roll-ups): their offsets never hold segments back */
    private readonly softSinks: readonly string[],
  ) {}

  async start(): Promise<void> {
    const { cfg, log } = this.ctx;
    this.log = await DurableLog.open({
      dir: logDir(cfg.dataDir),
      durability: cfg.pipeline.durability,
      maxBytes: cfg.pipeline.maxLogBytes,
      log,
      onIoError: this.ctx.ioError,
      softSinks: [...this.softSinks],
    });
  }

  async stop(): Promise<void> {
    await this.log.close();
  }

  registerMetrics(m: NodeContext['metrics']): void {
    m.gauge('energy_ingest_log_bytes', 'bytes held by the durable log', () => this.log.bytes);
    m.counter(
      'energy_ingest_log_writes_total',
      'group writes of the durable log (each one write call, plus an fdatasync when a QoS 1/2 record is in it)',
      () => this.log.syncs,
    );
  }
}

export class PipelinePart implements Component {
  readonly name = 'pipeline';
  pipeline!: Pipeline;
  writer!: BatchWriter;

  constructor(
    private readonly ctx: NodeContext,
    private readonly sink: SinkPart,
    private readonly durable: LogPart,
    private readonly deadLetter: DeadLetterPart,
  ) {}

  start(): void {
    const { cfg, log, metrics } = this.ctx;
    const deadLetter = this.deadLetter.writer;
    this.writer = new BatchWriter({
      sink: this.sink.sink,
      retry: jitteredBackoff({ minMs: cfg.pipeline.retryMinMs, maxMs: cfg.pipeline.retryMaxMs }),
      probeIntervalMs: cfg.pipeline.probeIntervalMs,
      metrics,
      log,
      deadLetter: (r) => deadLetter.append(r),
      sourceOf: recordReader(this.durable.log),
    });
    this.sink.writes = this.writer;
    this.pipeline = new Pipeline(
      { ...cfg.pipeline, sinkName: 'influx', onReadError: (err) => this.ctx.ioError('log_read', err) },
      this.writer,
      this.durable.log,
      log,
    );
    this.pipeline.start();
    const pipeline = this.pipeline;
    const writer = this.writer;
    const drain = new DrainProgress(
      {
        get bytesBehind() {
          return pipeline.bytesBehind;
        },
        get pointsWritten() {
          return metrics.pointsWritten.get();
        },
        get failing() {
          return writer.failingSince !== null;
        },
      },
      log,
    );
    this.ctx.scheduler.every('drain-progress', 5000, () => drain.sample());
  }

  /** drain what is in memory and the log to the sink until the deadline; the rest waits for the next start */
  async stop(deadline: number): Promise<void> {
    this.ctx.scheduler.stop('drain-progress');
    const { unwritten, logBehind } = await this.pipeline.drain(deadline);
    if (unwritten || logBehind) {
      this.ctx.log.warn(
        { unwritten, logBytesBehind: logBehind },
        'stopped before everything was written: it stays in the durable log for the next start',
      );
    } else this.ctx.log.info('pipeline drained');
  }

  oldestUnsentAgeS(): number {
    const oldest = this.pipeline?.oldestUnsentMs;
    return oldest == null ? 0 : Math.max(0, Math.round((Date.now() - oldest) / 1000));
  }

  /** the /ready body's pipeline part; failing writes keep the node from being ready (the file sink has no probe) */
  readiness(): ReadinessExtra {
    const writer = this.writer;
    return {
      ready: writer?.failingSince == null,
      body: {
        log: { bytes: this.durable.log?.bytes ?? 0, oldest_unsent_age_s: this.oldestUnsentAgeS() },
        backlog_points: this.pipeline?.backlog ?? 0,
        last_write_error: writer?.lastError == null ? null : redactText(writer.lastError),
      },
    };
  }

  registerMetrics(m: NodeContext['metrics']): void {
    m.gauge(
      'energy_ingest_pipeline_backlog_points',
      'points buffered in memory',
      () => this.pipeline.backlog,
    );
    m.counter(
      'energy_ingest_pipeline_catchups_total',
      'times the sink fell behind the input and the pipeline read the durable log back from disk',
      () => this.pipeline.catchups,
    );
    m.gauge('energy_ingest_log_oldest_unsent_age_seconds', 'age of the oldest reading not yet written', () =>
      this.oldestUnsentAgeS(),
    );
  }
}
