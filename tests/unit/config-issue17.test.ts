import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';

// Issue 17's keys: the contract's defaults (sections 16 and 17) and their checks.
describe('configuration of the latest cache and the forecasts', () => {
  it('defaults: latest cache every 1000 ms, forecasts at minute 7 with 168 h of history', () => {
    const c = loadConfig({ env: {} });
    expect(c.redis).toMatchObject({ latestCache: true, latestIntervalMs: 1000, latestMaxPending: 100_000 });
    expect(c.forecast).toEqual({
      cron: '7 * * * *',
      minHistoryHours: 168,
      historyHours: 672,
      backtestDays: 7,
    });
  });

  it('takes node-cron schedules with seconds, refuses a bad one and a history shorter than the minimum', () => {
    expect(loadConfig({ env: { EI_FORECAST_CRON: '*/2 * * * * *' } }).forecast.cron).toBe('*/2 * * * * *');
    expect(() => loadConfig({ env: { EI_FORECAST_CRON: 'every hour' } })).toThrow(
      /forecast\.cron: "every hour" is not a valid cron expression/,
    );
    expect(() =>
      loadConfig({ env: { EI_FORECAST_MIN_HISTORY_HOURS: '500', EI_FORECAST_HISTORY_HOURS: '400' } }),
    ).toThrow(/forecast\.historyHours: must be at least forecast\.minHistoryHours/);
    expect(() => loadConfig({ env: { EI_REDIS_LATEST_INTERVAL_MS: '0' } })).toThrow(
      /redis\.latestIntervalMs/,
    );
  });
});
