import type { Component, NodeContext } from '../component.js';
import { IngestError } from '../errors.js';
import { redactText } from '../redact.js';
import { createSink } from './detect.js';
import { InvalidRowsWatch } from './invalidRows.js';
import type { Sink } from './sink.js';

/** what the pipeline's writer tells about the sink's writes */
export interface WriteHealth {
  readonly failingSince: number | null;
  readonly lastError: string | null;
}

/** The reading sink (InfluxDB v1, v2 or the file sink), answering the /ready check "influxdb". */
export class SinkPart implements Component {
  readonly name = 'sink';
  sink!: Sink;
  /** set by the pipeline: answering /ping is not enough when every write is refused */
  writes: WriteHealth | null = null;

  constructor(private readonly ctx: NodeContext) {}

  get check(): string | undefined {
    return this.ctx.cfg.influx.url ? 'influxdb' : undefined;
  }

  async start(): Promise<void> {
    const { cfg, log, metrics, scheduler } = this.ctx;
    this.sink = await createSink(cfg.influx, cfg.dataDir, log);
    try {
      await this.sink.connect();
      log.info({ sink: this.sink.name, backslashMode: this.sink.backslashMode }, 'sink ready');
    } catch (err) {
      // Down at start is an outage like any other: readings wait in the log. A
      // wrong bucket or token is not: those stop start-up with their message.
      if (!(err instanceof IngestError) || err.code !== 'EI_INFLUX_UNREACHABLE') throw err;
      log.warn(
        { sink: this.sink.name },
        `${err.message}; accepting readings into the durable log until it answers`,
      );
    }
    const url = cfg.influx.url;
    if (url && this.sink.newlines !== 'raw' && cfg.influx.invalidRowsCheckMs > 0) {
      // not InfluxDB (VictoriaMetrics): it answers 204 to rows it drops, so watch its own count of them
      const watch = new InvalidRowsWatch({
        url,
        timeoutMs: cfg.influx.timeoutMs,
        onInvalid: (rows, total) => {
          metrics.sinkRowsInvalid.inc(undefined, rows);
          this.ctx.rateLog.warn(
            'sink-rows-invalid',
            { rows, total },
            'the sink server dropped line-protocol rows it could not parse (vm_rows_invalid_total)',
          );
        },
      });
      void watch.check();
      scheduler.every('sink-invalid-rows', cfg.influx.invalidRowsCheckMs, () => watch.check());
    }
  }

  async probe(): Promise<void> {
    await this.sink.ping();
    const w = this.writes;
    if (w?.failingSince != null)
      throw new Error(
        `writes failing since ${new Date(w.failingSince).toISOString()}: ${redactText(w.lastError ?? '')}`,
      );
  }

  async stop(): Promise<void> {
    this.ctx.scheduler.stop('sink-invalid-rows');
    await this.sink.close();
  }
}
