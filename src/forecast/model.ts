// The energy forecast model (contract section 17): a weekly profile with a
// level correction, in plain numerics.
//
// Building energy use repeats by day and by week (office hours, weekends), so
// the forecast for an hour is the average of the same hour of the week
// (weekday × hour, 168 slots) over the history, recent weeks weighing more
// (each week back counts WEEK_DECAY as much), plus the building's recent level
// shift: how far the last 24 hours ran above or below their own profile
// (measured leave-one-out, so an hour is not compared with itself), damped.
// A slot never seen yet (less than a week of history) falls back to the
// same hour the day before. The 80% interval comes from the model's own errors: the
// 10% and 90% quantiles of the leave-one-out relative residuals, applied to
// the forecast.
//
// Why not "same hour yesterday" (the baseline): it carries yesterday's noise
// whole and misses every weekday/weekend switch; averaging the same weekly
// slot over several weeks removes both. Slots are counted on UTC epoch hours:
// hour-of-week is a fixed shift of local hour-of-week in a zone without
// daylight-saving time (Korea), so the profile is the same, only rotated.

export const MODEL_NAME = 'weekly_profile_level';
export const BASELINE_NAME = 'seasonal_naive_24h';

const WEEK = 168;
const DAY = 24;
const WEEK_DECAY = 0.8;
/** share of the recent level shift carried into the forecast */
const LEVEL_DAMPING = 0.5;
const Q_LOW = 0.1;
const Q_HIGH = 0.9;

export interface HourlySeries {
  /** epoch hour (ms / 3_600_000) of values[0] */
  readonly startHour: number;
  /** kWh per hour; NaN where the hour has no data */
  readonly values: ArrayLike<number>;
}

export interface ForecastPoint {
  readonly hour: number;
  readonly kwh: number;
  readonly low: number;
  readonly high: number;
}

const mod = (a: number, m: number) => ((a % m) + m) % m;

/**
 * Forecasts the `horizon` hours right after the series (values[n] onwards),
 * from values[0..n-1].
 */
export function predict(s: HourlySeries, n: number, horizon: number): ForecastPoint[] {
  const y = s.values;
  const slotW = new Float64Array(WEEK);
  const slotY = new Float64Array(WEEK);
  let nonNegative = true;
  const decay = new Float64Array(Math.ceil(n / WEEK) + 1);
  for (let k = 0; k < decay.length; k++) decay[k] = WEEK_DECAY ** k;
  const weightOf = (i: number) => decay[Math.floor((n - 1 - i) / WEEK)]!;
  for (let i = 0; i < n; i++) {
    const v = y[i]!;
    if (Number.isNaN(v)) continue;
    if (v < 0) nonNegative = false;
    const w = weightOf(i);
    const h = s.startHour + i;
    slotW[mod(h, WEEK)]! += w;
    slotY[mod(h, WEEK)]! += w * v;
  }
  /**
   * The profile at index i (epoch hour startHour + i), leaving out weight w of
   * value v (w = 0: nothing left out): the weekly slot's weighted mean; a slot
   * with no other observation (less than a week of history) falls back to the
   * nearest earlier day's value at the same hour, i.e. the baseline.
   */
  const profile = (i: number, w = 0, v = 0): number => {
    const k = mod(s.startHour + i, WEEK);
    const sw = slotW[k]! - w;
    if (sw > 1e-9) return (slotY[k]! - w * v) / sw;
    for (let j = i - DAY; j >= 0 && j > i - WEEK; j -= DAY) {
      if (j < n && !Number.isNaN(y[j]!)) return y[j]!;
    }
    return Number.NaN;
  };

  // leave-one-out residuals: the level shift (last day) and the interval (everything)
  const ratios = new Float64Array(n);
  let nRatios = 0;
  let levelSum = 0;
  let levelN = 0;
  for (let i = 0; i < n; i++) {
    const v = y[i]!;
    if (Number.isNaN(v)) continue;
    const p = profile(i, weightOf(i), v);
    if (Number.isNaN(p)) continue;
    if (i >= n - DAY) {
      levelSum += v - p;
      levelN++;
    }
    if (p > 0) ratios[nRatios++] = v / p - 1;
  }
  const level = levelN ? (LEVEL_DAMPING * levelSum) / levelN : 0;
  const sorted = ratios.subarray(0, nRatios).sort();
  const qLow = quantile(sorted, Q_LOW);
  const qHigh = quantile(sorted, Q_HIGH);

  const out: ForecastPoint[] = [];
  for (let j = 0; j < horizon; j++) {
    const h = s.startHour + n + j;
    let kwh = profile(n + j) + level;
    if (Number.isNaN(kwh)) kwh = 0;
    if (nonNegative) kwh = Math.max(0, kwh);
    let low = kwh * (1 + qLow);
    let high = kwh * (1 + qHigh);
    if (nonNegative) low = Math.max(0, low);
    if (high < low) [low, high] = [high, low];
    out.push({ hour: h, kwh, low: Math.min(low, kwh), high: Math.max(high, kwh) });
  }
  return out;
}

function quantile(sorted: Float64Array, q: number): number {
  if (!sorted.length) return 0;
  const x = q * (sorted.length - 1);
  const i = Math.floor(x);
  const j = Math.min(sorted.length - 1, i + 1);
  return sorted[i]! + (sorted[j]! - sorted[i]!) * (x - i);
}

export interface Backtest {
  /** hours compared (actual known, > 0, and a baseline value exists) */
  readonly hours: number;
  /** percent */
  readonly mape: number;
  readonly baselineMape: number;
  /** share of compared hours inside the 80% interval */
  readonly coverage: number;
}

/**
 * Rolling backtest over the last `days` days: for each, the model is fitted on
 * everything before that day and forecasts its 24 hours; the baseline for an
 * hour is the same hour the day before (known at the forecast's origin).
 * Only hours with a positive actual and a baseline value count, for both.
 */
export function backtest(s: HourlySeries, days: number): Backtest {
  const y = s.values;
  const n = y.length;
  let errM = 0;
  let errB = 0;
  let inside = 0;
  let count = 0;
  for (let d = days; d >= 1; d--) {
    const origin = n - d * DAY;
    if (origin < DAY) continue;
    const fc = predict(s, origin, DAY);
    for (let j = 0; j < DAY; j++) {
      const actual = y[origin + j]!;
      const naive = y[origin + j - DAY]!;
      if (!(actual > 0) || Number.isNaN(naive)) continue;
      const p = fc[j]!;
      errM += Math.abs(actual - p.kwh) / actual;
      errB += Math.abs(actual - naive) / actual;
      if (actual >= p.low && actual <= p.high) inside++;
      count++;
    }
  }
  const pct = (e: number) => (count ? Math.round((e / count) * 10_000) / 100 : 0);
  return {
    hours: count,
    mape: pct(errM),
    baselineMape: pct(errB),
    coverage: count ? inside / count : 0,
  };
}

/** How many held-out days a history of n hours allows: up to `max`, keeping a week to fit on when it can. */
export function backtestDays(n: number, max: number): number {
  return Math.max(1, Math.min(max, Math.floor((n - WEEK) / DAY)));
}
