// Realistic sensor values: day/night cycles and a power profile per building
// kind. Pure functions of (series, time) plus a random source, so tests can
// pin them down.

import { defaultUnit } from '../src/ingest/units.js';

export interface Series {
  readonly building: number;
  readonly floor: number;
  readonly room: number;
  readonly type: string;
}

/** The unit a real sensor would send: the daemon's default for its type, or none. */
export function unitFor(type: string): string | undefined {
  return defaultUnit(type) || undefined;
}

/** 0 at midnight, 1 at 14:00 local-ish (UTC+9, the system's buildings are in Korea). */
function daylight(tMs: number): number {
  const hour = (((tMs / 3_600_000 + 9) % 24) + 24) % 24;
  return Math.max(0, Math.cos(((hour - 14) / 24) * 2 * Math.PI));
}

function occupied(tMs: number, building: number): number {
  const hour = (((tMs / 3_600_000 + 9) % 24) + 24) % 24;
  // building kinds rotate: office (8–19), residential (evenings), retail (10–22)
  const kind = building % 3;
  if (kind === 1) return hour >= 8 && hour < 19 ? 1 : 0.15;
  if (kind === 2) return hour >= 18 || hour < 8 ? 0.9 : 0.3;
  return hour >= 10 && hour < 22 ? 1 : 0.1;
}

export function valueFor(s: Series, tMs: number, rnd: () => number): number {
  const d = daylight(tMs);
  const occ = occupied(tMs, s.building);
  const noise = (scale: number) => (rnd() - 0.5) * scale;
  let v: number;
  switch (s.type) {
    case 'temperature':
      v = 20 + 4 * d + 1.5 * occ + noise(0.6);
      break;
    case 'humidity':
      v = 55 - 12 * d + noise(3);
      break;
    case 'power':
      v = (300 + 2500 * occ) * (1 + s.room * 0.05) + noise(150);
      break;
    case 'energy':
      v = ((300 + 2500 * occ) / 1000) * (1 / 3600) + noise(0.0001);
      break;
    case 'illuminance':
      v = 30 + 700 * d * (0.5 + occ / 2) + noise(40);
      break;
    case 'co2':
      v = 420 + 600 * occ + noise(40);
      break;
    default:
      v = 50 + noise(10);
  }
  return Math.round(Math.max(0, v) * 100) / 100;
}

/** A value far outside the normal band, to exercise alert rules. */
export function anomalyFor(s: Series, rnd: () => number): number {
  switch (s.type) {
    case 'temperature':
      return 45 + rnd() * 10;
    case 'power':
      return 12000 + rnd() * 5000;
    case 'co2':
      return 2500 + rnd() * 1000;
    default:
      return 9999;
  }
}

/** Malformed messages of every rejection kind, for --bad-rate. */
export function badMessage(s: Series, rnd: () => number): { topicSuffix?: string; payload: string } {
  const pick = Math.floor(rnd() * 5);
  switch (pick) {
    case 0:
      return { payload: '{"value": 23.5,' };
    case 1:
      return { payload: 'NaN' };
    case 2:
      return { payload: JSON.stringify({ value: 'warm' }) };
    case 3:
      return { payload: JSON.stringify({ value: 1, timestamp: 'yesterday' }) };
    default:
      return {
        topicSuffix: '/extra/level',
        payload: JSON.stringify({ value: valueFor(s, Date.now(), rnd) }),
      };
  }
}
