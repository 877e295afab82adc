import { describe, expect, it } from 'vitest';
import { backtest, backtestDays, predict } from '../../src/forecast/model.js';
import { energyPattern } from '../helpers/energyPattern.js';

const START = Math.floor(Date.UTC(2026, 9, 5) / 3_600_000); // a Monday, 00:00 UTC

describe('energy forecast model (contract section 17)', () => {
  it('beats "same hour yesterday" in the rolling backtest on daily + weekly cycles with noise', () => {
    let model = 0;
    let baseline = 0;
    let wins = 0;
    const n = 30;
    for (let b = 1; b <= n; b++) {
      const values = energyPattern(b, START, 28 * 24);
      const bt = backtest({ startHour: START, values }, backtestDays(values.length, 7));
      expect(bt.hours).toBe(7 * 24);
      model += bt.mape;
      baseline += bt.baselineMape;
      if (bt.mape < bt.baselineMape) wins++;
    }
    model /= n;
    baseline /= n;
    // by a margin, not by luck: the baseline misses every weekday/weekend switch
    expect(model).toBeLessThan(baseline * 0.7);
    expect(wins).toBeGreaterThanOrEqual(n - 2);
    // the noise alone is ±8% per hour: nothing can be far below ~6%
    expect(model).toBeGreaterThan(4);
  });

  it("gives an 80% interval that holds about 80% of the next day's hours", () => {
    let inside = 0;
    let total = 0;
    for (let b = 1; b <= 60; b++) {
      const all = energyPattern(b, START, 28 * 24 + 24);
      const fc = predict({ startHour: START, values: all }, 28 * 24, 24);
      fc.forEach((p, j) => {
        const actual = all[28 * 24 + j]!;
        expect(p.low).toBeLessThanOrEqual(p.kwh);
        expect(p.high).toBeGreaterThanOrEqual(p.kwh);
        if (actual >= p.low && actual <= p.high) inside++;
        total++;
      });
    }
    const coverage = inside / total;
    expect(coverage).toBeGreaterThan(0.65);
    expect(coverage).toBeLessThan(0.95);
  });

  it('reproduces a noiseless weekly pattern exactly, for the right hours', () => {
    const week = Array.from({ length: 168 }, (_, k) => 10 + (k % 24) + (k >= 120 ? -5 : 0));
    const values = Array.from({ length: 3 * 168 }, (_, i) => week[i % 168]!);
    const fc = predict({ startHour: 168 * 1000, values }, values.length, 24);
    expect(fc.map((p) => p.hour)).toEqual(Array.from({ length: 24 }, (_, j) => 168 * 1000 + 3 * 168 + j));
    fc.forEach((p, j) => {
      expect(p.kwh).toBeCloseTo(week[j]!, 9);
      expect(p.low).toBeCloseTo(p.kwh, 9);
      expect(p.high).toBeCloseTo(p.kwh, 9);
    });
    const bt = backtest({ startHour: 168 * 1000, values }, 7);
    expect(bt.mape).toBe(0);
    expect(bt.baselineMape).toBeGreaterThan(0); // the weekend step
  });

  it('with under a week of history falls back to the same hour the day before; gaps are skipped', () => {
    const values = Array.from({ length: 6 * 24 }, (_, i) => (i >= 5 * 24 ? 100 + (i % 24) : 50));
    values[5 * 24 + 3] = Number.NaN;
    const fc = predict({ startHour: 0, values }, values.length, 24);
    // the last day's level stands 50 + hour above its fallback (the day before): half of it is carried
    expect(fc[0]!.kwh).toBeGreaterThan(100);
    expect(fc.every((p) => Number.isFinite(p.kwh) && Number.isFinite(p.low) && Number.isFinite(p.high))).toBe(
      true,
    );
  });

  it('holds back a week for fitting when it can', () => {
    expect(backtestDays(168, 7)).toBe(1);
    expect(backtestDays(200, 7)).toBe(1);
    expect(backtestDays(336, 7)).toBe(7);
    expect(backtestDays(672, 3)).toBe(3);
  });

  it('forecasts 1,000 buildings with their backtests in seconds (generous bound: the test machine is shared)', () => {
    const data = Array.from({ length: 1000 }, (_, b) => energyPattern(b + 1, START, 28 * 24));
    const t0 = performance.now();
    for (const values of data) {
      predict({ startHour: START, values }, values.length, 24);
      backtest({ startHour: START, values }, 7);
    }
    expect(performance.now() - t0).toBeLessThan(15_000);
  });
});
