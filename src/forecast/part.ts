import type { Component, NodeContext } from '../component.js';
import type { RedisPart } from '../redis.js';
import { ForecastService } from './service.js';
import { FORECAST_PREFIX } from './store.js';

/**
 * Energy forecasts (contract section 17): sensor_rollups_hourly → model →
 * forecast:{building_id} in Redis, on the scheduler's "forecast" job
 * (forecast.cron); only with both DATABASE_URL and REDIS_URL.
 */
export class ForecastPart implements Component {
  readonly name = 'forecast';
  service: ForecastService | null = null;

  constructor(
    private readonly ctx: NodeContext,
    private readonly redis: RedisPart,
  ) {}

  start(): void {
    const { cfg, log, scheduler } = this.ctx;
    const redis = this.redis.client;
    if (!cfg.postgres.url || !redis) return;
    const service = new ForecastService({ url: cfg.postgres.url, redis, log, ...cfg.forecast });
    this.service = service;
    scheduler.cron('forecast', cfg.forecast.cron, () => service.run());
  }

  /** the stored forecast's JSON text, null when there is none (or no Redis) */
  stored(buildingKey: string): Promise<string | null> {
    const redis = this.redis.client;
    return redis ? redis.get(`${FORECAST_PREFIX}${buildingKey}`) : Promise.resolve(null);
  }

  recent(buildingId: number, hours: number): Promise<Array<[number, number]>> {
    return this.service ? this.service.recent(buildingId, hours) : Promise.resolve([]);
  }

  async stop(): Promise<void> {
    this.ctx.scheduler.stop('forecast');
    await this.service?.stop();
  }
}
