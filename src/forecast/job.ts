import type { Redis } from 'ioredis';
import type pg from 'pg';
import { canonicalBuildingKey } from '../ingest/building.js';
import { BASELINE_NAME, backtest, backtestDays, MODEL_NAME, predict } from './model.js';
import { FORECAST_PREFIX, FORECAST_TTL_S, hourlyKwh } from './store.js';

// One forecast run (contract section 17): hourly kWh per building from the
// roll-ups → the model → `SET forecast:{building_id} <json> EX 7200`. Shared by
// the daemon's cron job and `energy-ingest forecast`.

const HOUR_MS = 3_600_000;
const HORIZON = 24;

export interface ForecastJson {
  readonly building_id: string;
  readonly generated_at: string;
  readonly model: string;
  readonly horizon_hours: 24;
  readonly points: ReadonlyArray<{ hour: string; kwh: number; low: number; high: number }>;
  readonly backtest: {
    readonly hours: number;
    readonly mape: number;
    readonly baseline: typeof BASELINE_NAME;
    readonly baseline_mape: number;
  };
}

export interface ForecastOptions {
  readonly minHistoryHours: number;
  readonly historyHours: number;
  readonly backtestDays: number;
}

export interface ForecastSummary {
  readonly forecasts: ForecastJson[];
  /** buildings with roll-ups but fewer than minHistoryHours hours of them (or none, for an asked-for one) */
  readonly skipped: Array<{ building_id: string; hours: number }>;
  readonly ms: number;
}

const r3 = (n: number) => Math.round(n * 1000) / 1000;

/**
 * Forecasts every building with power roll-ups (or just `buildingId`) from
 * the hours before `nowMs`'s hour, for that hour and the 23 after it, and
 * stores them in Redis (pipelined).
 */
export async function runForecasts(
  deps: { pool: pg.Pool; redis: Redis },
  opts: ForecastOptions,
  nowMs = Date.now(),
  buildingId?: number,
): Promise<ForecastSummary> {
  const t0 = performance.now();
  // the hour in progress is still being rolled up: the history ends before it
  const current = Math.floor(nowMs / HOUR_MS);
  const start = current - opts.historyHours;
  const byBuilding = await hourlyKwh(deps.pool, start, current, buildingId);
  if (buildingId !== undefined && !byBuilding.has(buildingId)) byBuilding.set(buildingId, []);
  const generatedAt = new Date(nowMs).toISOString();
  const forecasts: ForecastJson[] = [];
  const skipped: ForecastSummary['skipped'] = [];
  const values = new Float64Array(opts.historyHours);
  for (const [id, rows] of [...byBuilding].sort((a, b) => a[0] - b[0])) {
    const key = canonicalBuildingKey(id);
    if (rows.length < opts.minHistoryHours) {
      skipped.push({ building_id: key, hours: rows.length });
      continue;
    }
    values.fill(Number.NaN);
    for (const [h, kwh] of rows) values[h - start] = kwh;
    const series = { startHour: start, values };
    const points = predict(series, values.length, HORIZON);
    const bt = backtest(series, backtestDays(rows.length, opts.backtestDays));
    forecasts.push({
      building_id: key,
      generated_at: generatedAt,
      model: MODEL_NAME,
      horizon_hours: HORIZON,
      points: points.map((p) => ({
        hour: new Date(p.hour * HOUR_MS).toISOString(),
        kwh: r3(p.kwh),
        low: r3(p.low),
        high: r3(p.high),
      })),
      backtest: { hours: bt.hours, mape: bt.mape, baseline: BASELINE_NAME, baseline_mape: bt.baselineMape },
    });
  }
  for (let i = 0; i < forecasts.length; i += 500) {
    const p = deps.redis.pipeline();
    for (const f of forecasts.slice(i, i + 500))
      p.set(`${FORECAST_PREFIX}${f.building_id}`, JSON.stringify(f), 'EX', FORECAST_TTL_S);
    const results = (await p.exec()) ?? [];
    const failed = results.find(([err]) => err);
    if (failed) throw failed[0];
  }
  return { forecasts, skipped, ms: Math.round(performance.now() - t0) };
}

/** One line per building, then the totals: what `energy-ingest forecast` prints. */
export function summaryLines(s: ForecastSummary): string[] {
  const lines = s.forecasts.map((f) => {
    const sum = (k: 'kwh' | 'low' | 'high') => f.points.reduce((a, p) => a + p[k], 0).toFixed(1);
    return (
      `${f.building_id}: next 24 h ${sum('kwh')} kWh (hourly 80% bounds sum to ${sum('low')}–${sum('high')}); ` +
      `backtest MAPE ${f.backtest.mape}% vs ${f.backtest.baseline_mape}% same hour yesterday over ${f.backtest.hours} h`
    );
  });
  for (const k of s.skipped)
    lines.push(
      `${k.building_id}: skipped, ${k.hours} h of power roll-ups (fewer than forecast.minHistoryHours)`,
    );
  lines.push(
    `forecast: ${s.forecasts.length} building(s) in ${s.ms} ms, ${s.skipped.length} skipped` +
      (s.skipped.length
        ? ` (${s.skipped
            .slice(0, 20)
            .map((k) => k.building_id)
            .join(', ')}${s.skipped.length > 20 ? ', …' : ''})`
        : ''),
  );
  return lines;
}
