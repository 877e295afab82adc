import fc from 'fast-check';
import { describe, expect, inject, it } from 'vitest';
import { encodeReading, UnencodableError } from '../../src/ingest/lineProtocol.js';
import type { Reading } from '../../src/ingest/reading.js';
import { InfluxV1Sink } from '../../src/sinks/influxV1.js';
import { InfluxV2Sink } from '../../src/sinks/influxV2.js';
import { bodyOf, type Sink } from '../../src/sinks/sink.js';
import { eventually, influxQuery, victoriaExport } from '../helpers/services.js';

/** lines as the pipeline hands them to a sink: one body */
const writeLines = (sink: Sink, lines: string[]) => sink.write(bodyOf(lines), lines.length);

// The escaping proof the contract asks for: hostile tag values and string
// fields written through our sinks and read back from the real servers.

const FIXED = [
  '회의실 A',
  'a,b',
  'k=v',
  'x y',
  'q"uote',
  "it's",
  'back\\slash',
  'a\\,b',
  'a\\\\b',
  'a\\ b',
  '\\lead',
  '=,= ,',
  '한글,띄어 쓰기=값',
  '🌡️',
];
const hostile = fc.string({
  unit: fc.constantFrom(',', ' ', '=', '"', '\\', "'", '한', '글', 'a', 'Z', '0', '#', '🌡'),
  minLength: 1,
  maxLength: 16,
});

function reading(i: number, floor: string, room: string, type: string, status: string, now: number): Reading {
  return {
    buildingId: 1,
    building: 'building_001',
    floor,
    room,
    sensorType: type,
    value: i + 0.25,
    unit: `unit ${room}`,
    status,
    extra: [['note', `${status}\n두 번째 줄 "q" \\`]],
    timestampMs: now - i,
  };
}

function cases(): Array<[string, string, string, string]> {
  const gen = fc.sample(fc.tuple(hostile, hostile, hostile, hostile), { numRuns: 40, seed: 42 });
  return [...FIXED.map((s) => [s, s, s, s] as [string, string, string, string]), ...gen];
}

describe('hostile strings read back exactly from real servers', () => {
  it('InfluxDB 1.x (v1 /write, literal backslashes)', async () => {
    const url = inject('influx1Url');
    const db = `lp_${Date.now()}`;
    const sink = new InfluxV1Sink({ url, database: db, timeoutMs: 5000, backslashMode: 'literal' });
    await sink.connect();
    const now = Date.now();
    const expected: Reading[] = [];
    const lines: string[] = [];
    cases().forEach(([f, r, t, s], i) => {
      const rd = reading(i, f, r, t, s, now);
      try {
        lines.push(encodeReading(rd, 'literal', 'raw')); // what createSink picks for InfluxDB
        expected.push(rd);
      } catch (err) {
        // the one thing InfluxDB 1.x cannot store: a tag ending in a backslash
        expect(err).toBeInstanceOf(UnencodableError);
        expect([f, r, t].some((x) => x.endsWith('\\'))).toBe(true);
      }
    });
    expect(await writeLines(sink, lines)).toEqual({ kind: 'ok' });
    const rows = await influxQuery(url, db, 'SELECT * FROM sensor_readings');
    expect(rows).toHaveLength(expected.length);
    const byTime = new Map(rows.map((r) => [r.time as number, r]));
    for (const e of expected) {
      const row = byTime.get(e.timestampMs);
      expect(row, `point at ${e.timestampMs}`).toBeDefined();
      expect(row).toMatchObject({
        building_id: 'building_001',
        floor: e.floor,
        room: e.room,
        sensor_type: e.sensorType,
        value: e.value,
        unit: e.unit,
        status: e.status,
        note: e.extra[0]![1],
      });
    }
  });

  it('VictoriaMetrics (v2 /api/v2/write via @influxdata/influxdb-client, escaped backslashes)', async () => {
    const url = inject('victoriaUrl');
    const sink = new InfluxV2Sink({ url, org: 'energy_org', bucket: 'energy_data', timeoutMs: 5000 });
    await sink.connect();
    const now = Date.now();
    const run = `run${now}`;
    // VictoriaMetrics keeps numeric fields only and cuts lines at every raw
    // newline: string fields are written with 'escape' (tests/integration/injection.test.ts
    // proves the hostile ones); InfluxDB 1.x above proves newlines read back.
    const all = cases().map(([f, r, t, s], i) => ({
      ...reading(i, f, r, t, s, now),
      building: run,
      extra: [],
    }));
    expect(
      await writeLines(
        sink,
        all.map((rd) => encodeReading(rd, 'escape')),
      ),
    ).toEqual({ kind: 'ok' });
    const series = await eventually(
      async () => {
        const s = await victoriaExport(url, `{__name__="sensor_readings_value",building_id="${run}"}`);
        return (
          s.reduce((n, x) => n + x.values.length, 0) >=
            new Set(all.map((a) => `${a.floor}|${a.room}|${a.sensorType}|${a.timestampMs}`)).size && s
        );
      },
      15_000,
      'points visible in VictoriaMetrics',
    );
    const got = new Set<string>();
    for (const s of series) {
      s.timestamps.forEach((ts, i) => {
        got.add(`${s.metric.floor}|${s.metric.room}|${s.metric.sensor_type}|${ts}|${s.values[i]}`);
      });
    }
    for (const e of all)
      expect(got).toContain(`${e.floor}|${e.room}|${e.sensorType}|${e.timestampMs}|${e.value}`);
  });
});
