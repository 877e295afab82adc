import { describe, expect, it } from 'vitest';
import type { Reading } from '../../src/ingest/reading.js';
import { LatestReadings } from '../../src/latest/memory.js';
import { latestValue } from '../../src/latest/redisLatest.js';
import { aReading } from '../helpers/reading.js';

function r(building: string, sensorType: string, value: number, ts: number): Reading {
  const buildingId = Number(building.slice(9));
  return aReading({
    buildingId,
    building,
    floor: '1F',
    room: 'a',
    sensorType,
    value,
    unit: 'W',
    timestampMs: ts,
  });
}

describe('latest readings for the status page', () => {
  it('keeps the newest value per building and type; a late reading counts but does not replace it', () => {
    const l = new LatestReadings();
    l.record([r('building_001', 'power', 10, 2000), r('building_001', 'power', 5, 1000)], 3000);
    l.record([r('building_002', 'co2', 400, 1000)], 3000);
    const { buildings } = l.snapshot();
    expect(
      buildings.map((b) => [b.building_id, b.readings, b.sensors.power?.value ?? b.sensors.co2?.value]),
    ).toEqual([
      ['building_001', 2, 10],
      ['building_002', 1, 400],
    ]);
  });

  it('lists sensor types named like Object.prototype members (issue 12 item 6)', () => {
    const l = new LatestReadings();
    const types = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', '__defineGetter__'];
    types.forEach((t, i) => {
      l.record([r('building_001', t, i, 1000)], 2000);
    });
    const parsed = JSON.parse(JSON.stringify(l.snapshot())) as {
      buildings: Array<{ sensors: Record<string, { value: number }> }>;
    };
    const sensors = parsed.buildings[0]!.sensors;
    expect(Object.keys(sensors).sort()).toEqual([...types].sort());
    types.forEach((t, i) => {
      expect(Object.getOwnPropertyDescriptor(sensors, t)?.value.value).toBe(i);
    });
  });

  it('stays bounded under a flood of made-up buildings and types', () => {
    const l = new LatestReadings();
    for (let i = 0; i < 10_050; i++) l.record([r(`building_${i}`, 'power', 1, 1)], 1);
    for (let t = 0; t < 100; t++) l.record([r('building_0', `type${t}`, 1, 1)], 1);
    const s = l.snapshot();
    expect(s.buildings).toHaveLength(10_000);
    expect(s.overflow_readings).toBe(50);
    expect(Object.keys(s.buildings.find((b) => b.building_id === 'building_0')!.sensors)).toHaveLength(32);
  });
});

describe('latest readings in Redis: the hash value (contract section 16)', () => {
  it('is exactly JSON.stringify({value, unit, status, timestamp}) with an ISO 8601 UTC timestamp', () => {
    const cases: Array<[number, string, string, number]> = [
      [23.5, 'celsius', 'normal', Date.UTC(2024, 0, 15, 10, 30)],
      [-0.001, 'W', 'warning', Date.UTC(2026, 10, 30, 23, 59, 59, 999)],
      [1e21, 'ppm', 'a "quoted" \\ status\n', Date.UTC(2026, 10, 30, 0, 0, 0, 7)],
      [5, '전력', '정상', Date.UTC(2026, 10, 30, 0, 0, 0, 70)],
      [0, 'x', 'y', 0],
      [1, 'x', 'y', -1],
      [2, 'x', 'y', 1705314600999.9],
    ];
    for (const [value, unit, status, ts] of cases) {
      const text = latestValue(aReading({ value, unit, status, timestampMs: ts }));
      expect(text).toBe(JSON.stringify({ value, unit, status, timestamp: new Date(ts).toISOString() }));
    }
  });
});
