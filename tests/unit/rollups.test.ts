import { describe, expect, it } from 'vitest';
import { encodeReading } from '../../src/ingest/lineProtocol.js';
import type { Reading } from '../../src/ingest/reading.js';
import { RollupAggregator } from '../../src/rollups/rollups.js';

const base = { buildingId: 7, floor: '1', room: '회의실 A,=', sensorType: 'power' };
const H = Date.UTC(2024, 0, 15, 10);

describe('hourly roll-ups', () => {
  it('counts, sums and widens per series and UTC hour', () => {
    const a = new RollupAggregator();
    a.add({ ...base, value: 100, timestampMs: H + 1 });
    a.add({ ...base, value: 300, timestampMs: H + 3_599_999 });
    a.add({ ...base, value: 50, timestampMs: H + 3_600_000 });
    a.add({ ...base, room: 'b', value: 7, timestampMs: H });
    const { rows } = a.take();
    expect(rows).toEqual([
      { ...base, hourMs: H, count: 2, sum: 400, min: 100, max: 300 },
      { ...base, hourMs: H + 3_600_000, count: 1, sum: 50, min: 50, max: 50 },
      { ...base, room: 'b', hourMs: H, count: 1, sum: 7, min: 7, max: 7 },
    ]);
    expect(a.take().rows).toEqual([]);
  });

  it('puts rows back after a failed flush, merged with newer ones', () => {
    const a = new RollupAggregator();
    a.add({ ...base, value: 10, timestampMs: H });
    const { rows } = a.take();
    a.add({ ...base, value: 30, timestampMs: H });
    a.restore(rows);
    expect(a.take().rows).toEqual([{ ...base, hourMs: H, count: 2, sum: 40, min: 10, max: 30 }]);
  });

  it('rebuilds readings from the lines a durable-log record holds, in both escaping modes', () => {
    for (const mode of ['escape', 'literal'] as const) {
      const r: Reading = {
        ...base,
        building: 'building_007',
        value: 12.5,
        unit: 'W',
        status: 'normal',
        extra: [],
        timestampMs: H + 5,
      };
      const a = new RollupAggregator();
      a.addLines([encodeReading(r, mode), encodeReading({ ...r, value: 2.5 }, mode)], mode);
      expect(a.take().rows).toEqual([{ ...base, hourMs: H, count: 2, sum: 15, min: 2.5, max: 12.5 }]);
    }
  });
});
