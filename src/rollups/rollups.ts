import { parseBuildingSegment } from '../ingest/building.js';
import type { BackslashMode } from '../ingest/lineProtocol.js';
import { readLine } from '../ingest/lineProtocolReader.js';

// Hourly roll-ups per (building, floor, room, sensor type), kept in memory and
// merged into sensor_rollups_hourly (count/sum add, min/max widen). Pure: the
// PostgreSQL side is rollupStore.ts.

export interface RollupRow {
  readonly buildingId: number;
  readonly floor: string;
  readonly room: string;
  readonly sensorType: string;
  /** start of the UTC hour, epoch ms */
  readonly hourMs: number;
  count: number;
  sum: number;
  min: number;
  max: number;
}

export interface RollupInput {
  readonly buildingId: number;
  readonly floor: string;
  readonly room: string;
  readonly sensorType: string;
  readonly value: number;
  readonly timestampMs: number;
}

const HOUR = 3_600_000;

export interface RollupBounds {
  /** rows (series × hour) held at most; readings that would add a row beyond are not counted */
  readonly maxRows?: number;
  readonly onUntracked?: () => void;
}

export class RollupAggregator {
  private rows = new Map<string, RollupRow>();
  private readonly maxRows: number;

  constructor(private readonly bounds: RollupBounds = {}) {
    this.maxRows = bounds.maxRows ?? Number.POSITIVE_INFINITY;
  }
  /** log offset up to which every record's readings are in `rows` (or already flushed) */
  offset = 0;

  get size(): number {
    return this.rows.size;
  }

  add(r: RollupInput): void {
    const hourMs = Math.floor(r.timestampMs / HOUR) * HOUR;
    const key = `${r.buildingId}\u0000${r.floor}\u0000${r.room}\u0000${r.sensorType}\u0000${hourMs}`;
    const row = this.rows.get(key);
    if (row) {
      row.count++;
      row.sum += r.value;
      if (r.value < row.min) row.min = r.value;
      if (r.value > row.max) row.max = r.value;
    } else if (this.rows.size >= this.maxRows) {
      // memory stays bounded while PostgreSQL is away or a flood invents series (counted, logged)
      this.bounds.onUntracked?.();
    } else {
      this.rows.set(key, {
        buildingId: r.buildingId,
        floor: r.floor,
        room: r.room,
        sensorType: r.sensorType,
        hourMs,
        count: 1,
        sum: r.value,
        min: r.value,
        max: r.value,
      });
    }
  }

  /** Readings rebuilt from a durable-log record's lines (replay after a restart). */
  addLines(lines: readonly string[], mode: BackslashMode): void {
    for (const line of lines) {
      const p = readLine(line, mode);
      const buildingId = parseBuildingSegment(p.tags.building_id ?? '');
      const value = p.fields.value;
      if (buildingId === undefined || typeof value !== 'number') continue;
      this.add({
        buildingId,
        floor: p.tags.floor ?? '',
        room: p.tags.room ?? '',
        sensorType: p.tags.sensor_type ?? '',
        value,
        timestampMs: p.timestamp,
      });
    }
  }

  /** Hand over everything accumulated so far, with the offset it covers. */
  take(): { rows: RollupRow[]; offset: number } {
    const rows = [...this.rows.values()];
    this.rows = new Map();
    return { rows, offset: this.offset };
  }

  /** Put rows back after a failed flush (merged with what arrived meanwhile). */
  restore(rows: readonly RollupRow[]): void {
    for (const r of rows) {
      const key = `${r.buildingId}\u0000${r.floor}\u0000${r.room}\u0000${r.sensorType}\u0000${r.hourMs}`;
      const cur = this.rows.get(key);
      if (!cur) this.rows.set(key, { ...r });
      else {
        cur.count += r.count;
        cur.sum += r.sum;
        cur.min = Math.min(cur.min, r.min);
        cur.max = Math.max(cur.max, r.max);
      }
    }
  }
}
