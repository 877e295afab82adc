import type { Redis } from 'ioredis';
import cron, { type ScheduledTask } from 'node-cron';
import pg from 'pg';
import type { Logger } from 'pino';
import { type ForecastOptions, type ForecastSummary, runForecasts } from './job.js';
import { FORECAST_PREFIX, hourlyKwh } from './store.js';

// The daemon's side of the forecasts: the forecast.cron job, and what the
// HTTP API and the status page read (a stored forecast, a building's last hours).

export interface ForecastServiceOptions extends ForecastOptions {
  readonly url: string;
  readonly cron: string;
  readonly redis: Redis;
  readonly log: Logger;
  readonly onRun?: (s: ForecastSummary) => void;
  readonly onError?: (err: unknown) => void;
}

export class ForecastService {
  private pool: pg.Pool;
  private task: ScheduledTask | null = null;

  constructor(private readonly opts: ForecastServiceOptions) {
    // its own small pool: a long forecast query never holds up the metadata loads
    this.pool = new pg.Pool({
      connectionString: opts.url,
      max: 2,
      connectionTimeoutMillis: 5000,
      statement_timeout: 60_000,
    });
    this.pool.on('error', (err) => opts.log.debug({ err: err.message }, 'forecast pool connection lost'));
  }

  start(): void {
    this.task = cron.schedule(this.opts.cron, () => this.run().catch(() => {}), {
      noOverlap: true,
      name: 'energy-forecast',
    });
  }

  /** One run over every building; the summary is logged (skipped buildings listed). */
  async run(): Promise<ForecastSummary> {
    const { log } = this.opts;
    try {
      const s = await runForecasts({ pool: this.pool, redis: this.opts.redis }, this.opts);
      log.info(
        {
          buildings: s.forecasts.length,
          skipped: s.skipped.map((k) => k.building_id),
          ms: s.ms,
        },
        'energy forecasts stored',
      );
      this.opts.onRun?.(s);
      return s;
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'energy forecast run failed; next try on the next schedule');
      this.opts.onError?.(err);
      throw err;
    }
  }

  /** The stored forecast's JSON text, or null. */
  stored(buildingKey: string): Promise<string | null> {
    return this.opts.redis.get(`${FORECAST_PREFIX}${buildingKey}`);
  }

  /** kWh of the building's last `hours` complete hours (the status page's chart) */
  async recent(buildingId: number, hours: number, nowMs = Date.now()): Promise<Array<[number, number]>> {
    const current = Math.floor(nowMs / 3_600_000);
    const m = await hourlyKwh(this.pool, current - hours, current, buildingId);
    return m.get(buildingId) ?? [];
  }

  async stop(): Promise<void> {
    await this.task?.stop();
    this.task = null;
    await this.pool.end().catch(() => {});
  }
}
