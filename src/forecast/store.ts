import type pg from 'pg';

// Every SQL statement and Redis key of the forecasts, in one place.

export const FORECAST_PREFIX = 'forecast:';
export const FORECAST_TTL_S = 7200;

const HOUR_MS = 3_600_000;

/** 'YYYY-MM-DD HH:MM:SS' for a TIMESTAMP (without zone) column holding UTC, as the roll-ups write it */
function sqlHour(epochHour: number): string {
  return new Date(epochHour * HOUR_MS).toISOString().slice(0, 19).replace('T', ' ');
}

/**
 * kWh per building and hour in [fromHour, toHour) (epoch hours), from the
 * power roll-ups: each series' mean power in W over an hour is that hour's Wh
 * (as the energy_usage_daily view counts it); a building's hour sums its
 * series. One query for every building: one scan, not one per building.
 */
export async function hourlyKwh(
  pool: pg.Pool,
  fromHour: number,
  toHour: number,
  buildingId?: number,
): Promise<Map<number, Array<[hour: number, kwh: number]>>> {
  const params: unknown[] = [sqlHour(fromHour), sqlHour(toHour)];
  if (buildingId !== undefined) params.push(buildingId);
  const r = await pool.query<{ building_id: number; h: string; kwh: number }>(
    `SELECT building_id, (EXTRACT(EPOCH FROM hour) / 3600)::bigint AS h, SUM(sum / count) / 1000.0 AS kwh
       FROM sensor_rollups_hourly
      WHERE sensor_type = 'power' AND count > 0 AND hour >= $1::timestamp AND hour < $2::timestamp
        ${buildingId !== undefined ? 'AND building_id = $3' : ''}
      GROUP BY building_id, hour
      ORDER BY building_id, hour`,
    params,
  );
  const out = new Map<number, Array<[number, number]>>();
  for (const row of r.rows) {
    let list = out.get(row.building_id);
    if (!list) {
      list = [];
      out.set(row.building_id, list);
    }
    list.push([Number(row.h), Number(row.kwh)]);
  }
  return out;
}
