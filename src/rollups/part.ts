import type { Component, NodeContext } from '../component.js';
import type { ReadingConsumer } from '../ingest/consumer.js';
import type { LogPart } from '../pipeline/parts.js';
import type { SinkPart } from '../sinks/part.js';
import { RollupSync } from './sync.js';

/** Hourly roll-ups in PostgreSQL (only with DATABASE_URL): a consumer of accepted readings and of the log. */
export class RollupsPart implements Component, ReadingConsumer {
  readonly name = 'rollups';
  private sync: RollupSync | null = null;

  constructor(
    private readonly ctx: NodeContext,
    private readonly durable: LogPart,
    private readonly sink: SinkPart,
  ) {}

  async start(): Promise<void> {
    const { cfg, log } = this.ctx;
    if (!cfg.postgres.url) return;
    this.sync = new RollupSync({
      url: cfg.postgres.url,
      dataDir: cfg.dataDir,
      flushIntervalMs: cfg.rollups.flushIntervalMs,
      durableLog: this.durable.log,
      backslashMode: this.sink.sink.backslashMode,
      log,
      maxRows: cfg.alerts.maxSeries,
      onUntracked: () => this.ctx.untracked('rollups'),
      scheduler: this.ctx.scheduler,
    });
    await this.sync.start();
  }

  consume(readings: Parameters<ReadingConsumer['consume']>[0], _receivedAtMs: number, logEnd: number): void {
    this.sync?.record(readings, logEnd);
  }

  async stop(): Promise<void> {
    await this.sync?.stop();
  }
}
