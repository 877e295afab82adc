import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import fc from 'fast-check';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { encodeReading, UnencodableError } from '../../src/ingest/lineProtocol.js';
import { readLine } from '../../src/ingest/lineProtocolReader.js';
import { parseMessage } from '../../src/ingest/parse.js';
import type { Reading } from '../../src/ingest/reading.js';
import { createSink } from '../../src/sinks/detect.js';
import { InfluxV1Sink } from '../../src/sinks/influxV1.js';
import { InfluxV2Sink } from '../../src/sinks/influxV2.js';
import { bodyOf, type Sink } from '../../src/sinks/sink.js';
import { deadLetters, startApp, type TestApp } from '../helpers/app.js';
import { metricValue } from '../helpers/daemon.js';

/** lines as the pipeline hands them to a sink: one body */
const writeLines = (sink: Sink, lines: string[]) => sink.write(bodyOf(lines), lines.length);

import {
  eventually,
  influxQuery,
  type Service,
  startVictoria,
  tempDir,
  victoriaExport,
  wholePoints,
} from '../helpers/services.js';

// Issue 12 items 1, 6 and 7, attacked as a sensor would: with a real MQTT
// client, against the real servers. VictoriaMetrics runs per file here, so
// its vm_rows_invalid_total counts only what these tests sent.

const run = promisify(execFile);
const LIMITS = { maxPayloadBytes: 256 * 1024, maxFutureSkewS: 300, maxAgeS: 10 * 365 * 86400 };

/** The attack of issue 12 item 1: a string field that holds a whole forged line. */
function attack(ts: number): string {
  return JSON.stringify({
    value: 1,
    timestamp: ts,
    note: `x\nsensor_readings,building_id=building_002,floor=forged,room=injected,sensor_type=power value=666666 ${ts}\ny`,
  });
}

async function rowsInvalid(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = /^vm_rows_invalid_total\{type="influx"\} (\d+)$/m.exec(text);
  if (!m) throw new Error('vm_rows_invalid_total{type="influx"} missing from /metrics');
  return Number(m[1]);
}

async function publish(app: TestApp, msgs: Array<[string, string]>, clientId?: string): Promise<void> {
  const c = await mqtt.connectAsync(app.mqttUrl, { protocolVersion: 4, clientId, reconnectPeriod: 0 });
  try {
    for (const [topic, payload] of msgs) await c.publishAsync(topic, payload, { qos: 1 });
  } finally {
    await c.endAsync();
  }
}

let vm: Service;
beforeAll(async () => {
  vm = await startVictoria();
});
afterAll(async () => {
  await vm?.stop();
});

describe('line-protocol injection through string fields (issue 12 item 1)', () => {
  it('VictoriaMetrics: the forged line stores no building_002 point, the reading is stored, nothing is counted invalid', async () => {
    const invalidBefore = await rowsInvalid(vm.url);
    const t = await startApp({ INFLUX_URL: vm.url, INFLUX_API: 'v2', INFLUX_TOKEN: 'tok' });
    try {
      const ts = Date.now() - 5000;
      await publish(t, [
        ['sensors/building_001/1/lobby/power', attack(ts)],
        // a `"` in a field key: VictoriaMetrics used to read the rest of the line as one string
        ['sensors/building_001/1/lobby/energy', JSON.stringify({ value: 2, timestamp: ts, 'k"ey': 5 })],
        ['sensors/building_001/1/lobby/sentinel', JSON.stringify({ value: 3, timestamp: ts })],
      ]);
      await eventually(
        async () => (await victoriaExport(vm.url, '{sensor_type="sentinel"}')).length > 0,
        15_000,
        'the sentinel point in VictoriaMetrics',
      );
      expect(await victoriaExport(vm.url, '{building_id="building_002"}')).toEqual([]);
      expect(await victoriaExport(vm.url, '{floor="forged"}')).toEqual([]);
      // the attacker's own reading: stored with its value and timestamp, not silently lost
      const power = await victoriaExport(vm.url, '{__name__="sensor_readings_value",sensor_type="power"}');
      expect(power.map((s) => [s.metric.building_id, s.values, s.timestamps])).toEqual([
        ['building_001', [1], [ts]],
      ]);
      // the quoted key: refused and dead-lettered, not stored with a made-up timestamp
      expect(await victoriaExport(vm.url, '{sensor_type="energy"}')).toEqual([]);
      expect(deadLetters(t.dataDir).map((d) => [d.reason, d.topic])).toEqual([
        ['bad_value', 'sensors/building_001/1/lobby/energy'],
      ]);
      expect(await rowsInvalid(vm.url)).toBe(invalidBefore);
    } finally {
      await t.stop();
    }
  });

  it('a row VictoriaMetrics drops behind a 204 is counted in energy_ingest_sink_rows_invalid_total', async () => {
    const t = await startApp({
      INFLUX_URL: vm.url,
      INFLUX_API: 'v2',
      INFLUX_TOKEN: 'tok',
      EI_INFLUX_INVALID_ROWS_CHECK_MS: '200',
    });
    try {
      const counted = async () =>
        metricValue(
          await (await fetch(`${t.httpUrl}/metrics`)).text(),
          'energy_ingest_sink_rows_invalid_total',
        );
      expect(await counted()).toBe(0);
      // another writer's broken line (ours never are): VictoriaMetrics answers 204 and drops it
      await eventually(
        async () => {
          const res = await fetch(`${vm.url}/api/v2/write?precision=ms`, {
            method: 'POST',
            body: `sensor_readings,building_id=building_001 value="unterminated ${Date.now()}`,
          });
          expect(res.status).toBe(204);
          await new Promise((r) => setTimeout(r, 400));
          return (await counted()) >= 1;
        },
        20_000,
        'energy_ingest_sink_rows_invalid_total counting the dropped row',
      );
    } finally {
      await t.stop();
    }
  });

  it('file sink: the .lp file holds one physical line per reading, none forged', async () => {
    const t = await startApp({});
    try {
      const ts = Date.now() - 5000;
      await publish(t, [
        ['sensors/building_001/1/lobby/power', attack(ts)],
        ['sensors/building_001/1/lobby/status', JSON.stringify({ value: 4, status: 'a\r\nb', unit: 'u\rv' })],
        ['sensors/building_001/1/lobby/sentinel', JSON.stringify({ value: 3, timestamp: ts })],
      ]);
      const dir = join(t.dataDir, 'readings');
      const text = await eventually(
        async () => {
          const all = readdirSync(dir)
            .map((f) => readFileSync(join(dir, f), 'utf8'))
            .join('');
          return all.includes('sentinel') && all;
        },
        15_000,
        'the sentinel line in the .lp file',
      );
      expect(text).not.toContain('\r');
      const lines = text.split('\n').filter(Boolean);
      expect(lines).toHaveLength(3);
      for (const l of lines) {
        const p = readLine(l, 'escape');
        expect(p.measurement).toBe('sensor_readings');
        expect(p.tags.building_id).toBe('building_001');
      }
      expect(readLine(lines[0]!, 'escape').fields.value).toBe(1);
    } finally {
      await t.stop();
    }
  });

  it('InfluxDB 1.x (guard): the note reads back exactly, newlines and all, and no forged point exists', async () => {
    const db = `inj_${Date.now()}`;
    const t = await startApp({ INFLUX_URL: inject('influx1Url'), INFLUX_API: 'auto', INFLUX_DATABASE: db });
    try {
      const ts = Date.now() - 5000;
      const status = 'line1\r\nline2\rline3';
      // every tag and string field: Korean, quotes, backslashes, commas, =, spaces, line breaks
      const [floor, room, type] = ['층 1,=x', '회의실 "A" \\b', 'a=b,c d\\e'];
      const fields = {
        unit: '"k,W h"=\\',
        status: '상태\n"ok"\\ ,=',
        note: '메모 \\"\n\r,= x',
        'k ,=키': 'v',
      };
      await publish(t, [
        ['sensors/building_001/1/lobby/power', attack(ts)],
        ['sensors/building_001/1/lobby/status', JSON.stringify({ value: 4, timestamp: ts, status })],
        [
          `sensors/building_001/${floor}/${room}/${type}`,
          JSON.stringify({ value: 5, timestamp: ts, ...fields }),
        ],
      ]);
      const rows = await eventually(
        async () => {
          const r = await influxQuery(inject('influx1Url'), db, 'SELECT * FROM sensor_readings');
          // whole points only: a query racing the write can see the value-5 row without its value
          const extras = (v: number, f: string[]) =>
            wholePoints(
              r.filter((x) => x.value === v),
              f,
            );
          return (
            r.length >= 3 &&
            wholePoints(r) &&
            [1, 4, 5].every((v) => r.some((x) => x.value === v)) &&
            extras(1, ['note']) &&
            extras(5, ['note', 'k ,=키']) &&
            r
          );
        },
        15_000,
        'the points in InfluxDB',
      );
      expect(rows).toHaveLength(3);
      expect(rows.find((r) => r.value === 5)).toMatchObject({ floor, room, sensor_type: type, ...fields });
      expect(rows.every((r) => r.building_id === 'building_001')).toBe(true);
      const note = JSON.parse(attack(ts)).note as string;
      expect(rows.find((r) => r.sensor_type === 'power')).toMatchObject({ value: 1, note });
      expect(rows.find((r) => r.sensor_type === 'status')).toMatchObject({ value: 4, status });
    } finally {
      await t.stop();
    }
  });
});

describe('which sinks get raw line breaks', () => {
  it('only a server whose version header says InfluxDB; VictoriaMetrics (either API) and files get escapes', async () => {
    const dir = tempDir('sinkmode');
    try {
      const sinkFor = async (env: Record<string, string>) => {
        const cfg = loadConfig({ env: { DATA_DIR: dir, LOG_LEVEL: 'silent', ...env } });
        return (await createSink(cfg.influx, cfg.dataDir)).newlines;
      };
      expect(await sinkFor({ INFLUX_URL: inject('influx1Url') })).toBe('raw');
      expect(await sinkFor({ INFLUX_URL: vm.url })).toBe('escape'); // auto: v1 API, no version header
      expect(await sinkFor({ INFLUX_URL: vm.url, INFLUX_TOKEN: 'tok' })).toBe('escape'); // auto: v2
      expect(await sinkFor({ INFLUX_URL: vm.url, INFLUX_API: 'v2' })).toBe('escape'); // not probed
      expect(await sinkFor({})).toBe('escape');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// Hostile text for every tag and string field: Korean, quotes, backslashes,
// commas, `=`, spaces, line breaks of every kind, other controls.
const hostileText = fc.string({
  unit: fc.constantFrom(
    ',',
    ' ',
    '=',
    '"',
    '\\',
    "'",
    '\n',
    '\r',
    '\t',
    '\u0000',
    '\u000b',
    '\u0085',
    '\u2028',
    '\u2029',
    '한',
    '글',
    'a',
    'Z',
    '0',
    '#',
    '🌡',
  ),
  minLength: 1,
  maxLength: 8,
});
const hostileKey = fc.string({
  unit: fc.constantFrom(',', ' ', '=', '"', '\\', '\n', 'k', '키', '_', '#', '\u2028'),
  minLength: 1,
  maxLength: 8,
});
// Tags come from topic segments, where control characters are refused (bad_topic).
const hostileTag = fc.string({
  unit: fc.constantFrom(
    ',',
    ' ',
    '=',
    '"',
    '\\',
    "'",
    '\u2028',
    '\u2029',
    '한',
    '글',
    'a',
    'Z',
    '0',
    '#',
    '🌡',
  ),
  minLength: 1,
  maxLength: 12,
});
const hostileReading = fc.record({
  floor: hostileTag,
  room: hostileTag,
  type: hostileTag,
  unit: hostileText,
  status: hostileText,
  key: hostileKey,
  note: hostileText,
});

interface Case {
  reading: Reading;
}

/** Payloads through the real parser: what it refuses never reaches a sink. */
function hostileCases(n: number, seed: number, base: number, building: string): Case[] {
  const out: Case[] = [];
  fc.sample(hostileReading, { numRuns: n, seed }).forEach((h, i) => {
    const topic = `sensors/${building}/${h.floor}/${h.room}/${h.type}`;
    const payload = JSON.stringify({
      value: i + 0.5,
      timestamp: base + i,
      unit: h.unit,
      status: h.status,
      [h.key]: h.note,
    });
    const { readings } = parseMessage(topic, Buffer.from(payload), base + n + 1000, LIMITS);
    for (const reading of readings) out.push({ reading });
  });
  return out;
}

describe('hostile tags and string fields against the real servers (property)', () => {
  it('VictoriaMetrics counts none of our lines invalid and stores every value under the right labels', async () => {
    const before = await rowsInvalid(vm.url);
    const sink = new InfluxV2Sink({ url: vm.url, org: 'o', bucket: 'b', timeoutMs: 5000 });
    await sink.connect();
    const base = Date.now() - 600_000;
    const cases = hostileCases(300, 7, base, 'building_007');
    expect(cases.length).toBeGreaterThan(20);
    const lines = cases.map((c) => encodeReading(c.reading, 'escape', sink.newlines));
    for (const l of lines) expect(l).not.toMatch(/[\n\r]/);
    expect(
      await writeLines(sink, [
        ...lines,
        `sensor_readings,building_id=building_007,floor=end value=1 ${base}`,
      ]),
    ).toEqual({ kind: 'ok' });
    const series = await eventually(
      async () => {
        const s = await victoriaExport(
          vm.url,
          '{__name__="sensor_readings_value",building_id="building_007"}',
        );
        return s.some((x) => x.metric.floor === 'end') && s;
      },
      15_000,
      'points visible in VictoriaMetrics',
    );
    const got = new Set<string>();
    for (const s of series) {
      s.timestamps.forEach((ts, i) => {
        got.add(JSON.stringify([s.metric.floor, s.metric.room, s.metric.sensor_type, ts, s.values[i]]));
      });
    }
    for (const { reading: r } of cases) {
      expect(got).toContain(JSON.stringify([r.floor, r.room, r.sensorType, r.timestampMs, r.value]));
    }
    // every extra field arrived under its own name, none merged into another
    const names = new Set(
      (await victoriaExport(vm.url, '{building_id="building_007"}')).map((s) => s.metric.__name__),
    );
    for (const { reading: r } of cases) {
      for (const [k] of r.extra) expect(names).toContain(`sensor_readings_${k}`);
    }
    expect(await rowsInvalid(vm.url)).toBe(before);
  });

  it('InfluxDB 1.x reads every tag and string field back exactly', async () => {
    const url = inject('influx1Url');
    const db = `inj_prop_${Date.now()}`;
    const sink = new InfluxV1Sink({
      url,
      database: db,
      timeoutMs: 5000,
      backslashMode: 'literal',
      newlines: 'raw',
    });
    await sink.connect();
    const base = Date.now() - 600_000;
    const lines: string[] = [];
    const expected: Reading[] = [];
    for (const { reading } of hostileCases(150, 11, base, 'building_008')) {
      try {
        lines.push(encodeReading(reading, 'literal', sink.newlines));
        expected.push(reading);
      } catch (err) {
        // InfluxDB 1.x cannot store a tag ending in a backslash: refused (dead-lettered by ingress)
        expect(err).toBeInstanceOf(UnencodableError);
      }
    }
    expect(expected.length).toBeGreaterThan(20);
    expect(await writeLines(sink, lines)).toEqual({ kind: 'ok' });
    const rows = await influxQuery(url, db, 'SELECT * FROM sensor_readings');
    expect(rows).toHaveLength(expected.length);
    const byTime = new Map(rows.map((r) => [r.time as number, r]));
    for (const e of expected) {
      const row = byTime.get(e.timestampMs);
      expect(row).toMatchObject({
        building_id: 'building_008',
        floor: e.floor,
        room: e.room,
        sensor_type: e.sensorType,
        value: e.value,
        unit: e.unit,
        status: e.status,
        ...Object.fromEntries(e.extra),
      });
    }
  });
});

describe('prototype keys from input (issue 12 item 6)', () => {
  it('/api/latest shows sensor types named __proto__, constructor, toString, hasOwnProperty', async () => {
    const t = await startApp({});
    try {
      const types = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf'];
      await publish(
        t,
        types.map((ty, i) => [`sensors/building_001/1/r/${ty}`, JSON.stringify({ value: i + 1, unit: 'u' })]),
      );
      const body = await eventually(async () => {
        const res = await fetch(`${t.httpUrl}/api/latest`);
        const text = await res.text();
        return text.includes('valueOf') && text;
      });
      const b = (JSON.parse(body) as { buildings: Array<{ sensors: Record<string, { value: number }> }> })
        .buildings[0]!;
      expect(Object.keys(b.sensors).sort()).toEqual([...types].sort());
      types.forEach((ty, i) => {
        expect(Object.getOwnPropertyDescriptor(b.sensors, ty)?.value.value).toBe(i + 1);
      });
    } finally {
      await t.stop();
    }
  });
});

describe('dead letters split into one line per record for any line reader (issue 12 item 7)', () => {
  it("python3's splitlines() finds exactly as many lines as records", async () => {
    const t = await startApp({});
    try {
      const breaks = ['\u2028', '\u2029', '\u0085'];
      const msgs: Array<[string, string]> = [];
      for (const b of breaks) {
        msgs.push([`sensors/building_001/1/r/t`, `{"value": "x${b}y"}`]); // bad_value, payload kept
        msgs.push([`sensors/building_001/1/r/t`, `not json ${b}`]); // bad_json
        msgs.push([`sensors/building_001/1${b}/r/t/extra`, '1']); // bad_topic: the topic holds it
        msgs.push([`sensors/building_999${b}/1/r/t`, '1']);
      }
      for (const b of breaks) await publish(t, msgs, `client${b}id${Date.now() % 1000}`);
      const dir = join(t.dataDir, 'deadletter');
      await eventually(async () => deadLetters(t.dataDir).length === msgs.length * breaks.length, 15_000);
      const script =
        'import sys\nfor p in sys.argv[1:]:\n  print(len(open(p, encoding="utf-8", newline="").read().splitlines()))';
      const files = readdirSync(dir).map((f) => join(dir, f));
      const { stdout } = await run('python3', ['-c', script, ...files], { timeout: 10_000 });
      const pieces = stdout.trim().split('\n').map(Number);
      const records = files.map((f) => readFileSync(f, 'utf8').split('\n').filter(Boolean).length);
      expect(pieces).toEqual(records);
      // and the JSON still holds the characters themselves
      const recs = deadLetters(t.dataDir);
      for (const b of breaks) {
        expect(recs.some((r) => (r.client_id as string).includes(b))).toBe(true);
        expect(recs.some((r) => (r.topic as string).includes(b))).toBe(true);
        expect(recs.some((r) => (r.payload as string).includes(b))).toBe(true);
      }
    } finally {
      await t.stop();
    }
  });
});
