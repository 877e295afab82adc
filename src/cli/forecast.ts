import { Redis } from 'ioredis';
import pg from 'pg';
import type { Config } from '../config/types.js';
import { IngestError } from '../errors.js';
import { runForecasts, summaryLines } from '../forecast/job.js';
import { parseBuildingSegment } from '../ingest/building.js';
import { redactText } from '../redact.js';

/** `energy-ingest forecast [--building ID]`: one run now, a line per building; exit 0 when stored, 1 when not. */
export async function runForecastCommand(
  cfg: Config,
  building: string | undefined,
  print: (line: string) => void,
): Promise<number> {
  const buildingId = building === undefined ? undefined : parseBuildingSegment(building);
  if (building !== undefined && buildingId === undefined)
    throw new IngestError(
      'EI_CLI_USAGE',
      `option --building must be building_NNN or a number (got "${building}")`,
    );
  if (!cfg.postgres.url || !cfg.redis.url)
    throw new IngestError(
      'EI_CLI_USAGE',
      'forecast needs DATABASE_URL (postgres.url) and REDIS_URL (redis.url)',
    );
  const pool = new pg.Pool({ connectionString: cfg.postgres.url, max: 1, connectionTimeoutMillis: 10_000 });
  pool.on('error', () => {});
  const redis = new Redis(cfg.redis.url, {
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    commandTimeout: 10_000,
    retryStrategy: () => null,
  });
  redis.on('error', () => {});
  try {
    await redis.connect();
    const s = await runForecasts({ pool, redis }, cfg.forecast, Date.now(), buildingId);
    for (const line of summaryLines(s)) print(line);
    return 0;
  } catch (err) {
    // no URL with a password in the message
    throw new IngestError('EI_FORECAST_FAILED', `forecast failed: ${redactText((err as Error).message)}`);
  } finally {
    redis.disconnect();
    await pool.end().catch(() => {});
  }
}
