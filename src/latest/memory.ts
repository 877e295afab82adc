import type { Reading } from '../ingest/reading.js';

// The newest reading per building and sensor type, for the status page
// (`GET /api/latest`). Bounded: a flood of made-up building ids or sensor
// types cannot grow it past MAX_BUILDINGS × MAX_TYPES entries, nor past
// `maxSeries` (alerts.maxSeries) entries in all; readings beyond are counted.

export interface LatestOptions {
  /** entries (building × sensor type) at most */
  readonly maxSeries?: number;
  /** a reading whose building or type could not be added */
  readonly onUntracked?: () => void;
}

const MAX_BUILDINGS = 10_000;
const MAX_TYPES = 32;

interface Latest {
  value: number;
  unit: string;
  floor: string;
  room: string;
  ts: number;
}

interface BuildingEntry {
  readings: number;
  lastAt: number;
  readonly types: Map<string, Latest>;
}

export interface LatestBuilding {
  readonly building_id: string;
  readonly readings: number;
  readonly last_at: string;
  readonly sensors: Record<string, { value: number; unit: string; floor: string; room: string; at: string }>;
}

export class LatestReadings {
  private readonly buildings = new Map<string, BuildingEntry>();
  /** readings of buildings beyond the bound: counted, not itemised */
  private overflow = 0;
  /** entries over all buildings */
  private entries = 0;
  private readonly maxSeries: number;

  constructor(private readonly opts: LatestOptions = {}) {
    this.maxSeries = opts.maxSeries ?? Number.POSITIVE_INFINITY;
  }

  record(readings: readonly Reading[], receivedAtMs: number): void {
    for (const r of readings) {
      let b = this.buildings.get(r.building);
      if (!b) {
        if (this.buildings.size >= MAX_BUILDINGS || this.entries >= this.maxSeries) {
          this.overflow++;
          this.opts.onUntracked?.();
          continue;
        }
        b = { readings: 0, lastAt: 0, types: new Map() };
        this.buildings.set(r.building, b);
      }
      b.readings++;
      b.lastAt = receivedAtMs;
      const t = b.types.get(r.sensorType);
      if (t) {
        if (r.timestampMs < t.ts) continue; // a late reading is not the latest
        t.value = r.value;
        t.unit = r.unit;
        t.floor = r.floor;
        t.room = r.room;
        t.ts = r.timestampMs;
      } else if (b.types.size >= MAX_TYPES || this.entries >= this.maxSeries) {
        this.opts.onUntracked?.();
      } else {
        this.entries++;
        b.types.set(r.sensorType, {
          value: r.value,
          unit: r.unit,
          floor: r.floor,
          room: r.room,
          ts: r.timestampMs,
        });
      }
    }
  }

  snapshot(): { buildings: LatestBuilding[]; overflow_readings: number } {
    const out: LatestBuilding[] = [];
    for (const [id, b] of this.buildings) {
      // prototype-free: a sensor type named "__proto__" is a key like any other (issue 12 item 6)
      const sensors: LatestBuilding['sensors'] = Object.create(null);
      for (const [type, t] of b.types) {
        sensors[type] = {
          value: t.value,
          unit: t.unit,
          floor: t.floor,
          room: t.room,
          at: new Date(t.ts).toISOString(),
        };
      }
      out.push({ building_id: id, readings: b.readings, last_at: new Date(b.lastAt).toISOString(), sensors });
    }
    out.sort((a, b) => (a.building_id < b.building_id ? -1 : 1));
    return { buildings: out, overflow_readings: this.overflow };
  }
}
