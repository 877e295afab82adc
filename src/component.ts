import type { Logger } from 'pino';
import type { Config } from './config/types.js';
import { RateLimitedLog } from './log.js';
import type { Metrics } from './metrics.js';
import type { Scheduler } from './scheduler.js';

// Every part of a node has one lifecycle (zigbee2mqtt's extensions, Telegraf's
// agent): the composition root (app.ts) lists them in data-flow order, starts
// them in that order so each has its consumers before it gets input, and stops
// them in reverse so shutdown drains towards the sinks. A part answers its own
// /ready check and registers its own scrape-time metrics.

export interface Component {
  readonly name: string;
  start(): Promise<void> | void;
  /** stop, giving up on waiting work at `deadline` (ms since the epoch) */
  stop(deadline: number): Promise<void> | void;
  /** the /ready check this part answers for (contract section 10: mqtt, influxdb, redis, postgres) */
  readonly check?: string;
  /**
   * resolves when healthy; throws with the reason (shown in /ready) otherwise.
   * It may resolve to fields the check shows besides ok/latency; `ok: false`
   * among them marks it failed (with their `error`) while keeping the fields.
   */
  probe?(): Promise<unknown>;
  /** scrape-time metrics, registered once the part has started */
  registerMetrics?(metrics: Metrics): void;
}

/** what a /ready answer carries besides the probes (the pipeline's log and backlog) */
export interface ReadinessExtra {
  /** false when something outside the probes keeps the node from being ready (failing writes to the file sink) */
  readonly ready: boolean;
  readonly body: Record<string, unknown>;
}

export class Lifecycle {
  private started: Component[] = [];

  constructor(
    private readonly components: readonly Component[],
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {}

  /** in order; a part that fails to start stops the start (the caller then calls stop) */
  async start(): Promise<void> {
    for (const c of this.components) {
      await c.start();
      this.started.push(c);
      c.registerMetrics?.(this.metrics);
      this.log.debug({ component: c.name }, 'started');
    }
  }

  /** in reverse, only what started; a part that fails to stop is logged and the others still stop */
  async stop(deadline: number): Promise<void> {
    for (const c of this.started.reverse()) {
      try {
        await c.stop(deadline);
      } catch (err) {
        this.log.error({ component: c.name, err }, 'stop failed');
      }
    }
    this.started = [];
  }

  /** the started parts that answer a /ready check */
  get checked(): readonly Component[] {
    return this.started.filter((c) => c.check !== undefined);
  }
}

/** What every part of a node is given: its configuration, the log, the metrics and the scheduler. */
export interface NodeContext {
  readonly cfg: Config;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly scheduler: Scheduler;
  /** warnings that could repeat per message: one line per key now and then */
  readonly rateLog: RateLimitedLog;
  /** a file or socket error on the hot path: retried by its owner, counted and logged here, never fatal */
  ioError(op: string, err: unknown): void;
  /** a series beyond alerts.maxSeries was not tracked by an in-memory table: counted, logged now and then */
  untracked(table: 'latest' | 'rollups'): void;
}

export function nodeContext(cfg: Config, log: Logger, metrics: Metrics, scheduler: Scheduler): NodeContext {
  const ioLog = new RateLimitedLog(log);
  return {
    cfg,
    log,
    metrics,
    scheduler,
    rateLog: ioLog,
    ioError(op, err) {
      const code = (err as NodeJS.ErrnoException)?.code ?? 'unknown';
      metrics.ioErrors.inc({ op, code });
      ioLog.warn(`io:${op}:${code}`, { op, code }, `${op} failed (retrying): ${(err as Error)?.message}`);
    },
    untracked(table) {
      metrics.seriesUntracked.inc({ table });
      ioLog.warn(
        `untracked-${table}`,
        { table, maxSeries: cfg.alerts.maxSeries },
        'alerts.maxSeries reached; readings of new series are not tracked here',
      );
    },
  };
}
