import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalBuildingKey, parseBuildingSegment } from '../../src/ingest/building.js';
import { parseMessage } from '../../src/ingest/parse.js';
import { parseTimestamp } from '../../src/ingest/timestamp.js';
import { parseSensorTopic } from '../../src/ingest/topic.js';

const NOW = Date.parse('2024-01-15T10:30:00Z');
const LIMITS = { maxPayloadBytes: 65536, maxFutureSkewS: 300, maxAgeS: 604800 };
const T = 'sensors/building_001/3/office_301/temperature';
const parse = (payload: string | Buffer, topic = T) =>
  parseMessage(topic, typeof payload === 'string' ? Buffer.from(payload) : payload, NOW, LIMITS);

describe('building keys', () => {
  it('pads ids to at least three digits', () => {
    expect(canonicalBuildingKey(1)).toBe('building_001');
    expect(canonicalBuildingKey(42)).toBe('building_042');
    expect(canonicalBuildingKey(1234)).toBe('building_1234');
  });
  it('accepts the canonical key and the bare id, nothing else', () => {
    expect(parseBuildingSegment('building_001')).toBe(1);
    expect(parseBuildingSegment('1')).toBe(1);
    expect(parseBuildingSegment('building_1234')).toBe(1234);
    expect(parseBuildingSegment('building_01')).toBeUndefined();
    expect(parseBuildingSegment('building_0001')).toBeUndefined();
    expect(parseBuildingSegment('0')).toBeUndefined();
    expect(parseBuildingSegment('b1')).toBeUndefined();
    expect(parseBuildingSegment('')).toBeUndefined();
  });
  it('round-trips every id', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1e12 }),
        (id) => parseBuildingSegment(canonicalBuildingKey(id)) === id,
      ),
    );
  });
});

describe('topic grammar', () => {
  it('parses the five levels', () => {
    expect(parseSensorTopic('sensors/1/3/회의실/power')).toEqual({
      ok: true,
      topic: { buildingId: 1, floor: '3', room: '회의실', sensorType: 'power' },
    });
  });
  it.each([
    ['sensors/1/3/room', 'four levels'],
    ['sensors/1/3/room/power/extra', 'six levels'],
    ['sensor/1/3/room/power', 'wrong prefix'],
    ['sensors/x/3/room/power', 'bad building'],
    ['sensors/1//room/power', 'empty floor'],
    ['sensors/1/3/ro\nom/power', 'newline'],
    ['sensors/1/3/ro\u0000om/power', 'NUL'],
    ['sensors/1/3/ro\u0085om/power', 'C1 control'],
    [`sensors/1/3/${'가'.repeat(22)}/power`, '66 bytes of Korean'],
  ])('rejects %j (%s)', (topic) => {
    expect(parseSensorTopic(topic).ok).toBe(false);
  });
  it('accepts 64 bytes exactly and hostile but printable characters', () => {
    expect(parseSensorTopic(`sensors/1/${'a'.repeat(64)}/r, =x"\\y/power`).ok).toBe(true);
  });
});

describe('payload forms', () => {
  it('JSON object with every field', () => {
    const r = parse(
      '{"value": 23.5, "unit": "celsius", "status": "normal", "timestamp": "2024-01-15T10:29:00Z"}',
    );
    expect(r.rejections).toEqual([]);
    expect(r.readings).toEqual([
      {
        buildingId: 1,
        building: 'building_001',
        floor: '3',
        room: 'office_301',
        sensorType: 'temperature',
        value: 23.5,
        unit: 'celsius',
        status: 'normal',
        extra: [],
        timestampMs: Date.parse('2024-01-15T10:29:00Z'),
        // the topic's shared line-protocol key slot (filled on first encoding)
        lpKeys: {},
        // "23.5" is bytes [10, 14) of the payload: the line protocol copies them
        valueAt: 10,
        valueEnd: 14,
      },
    ]);
  });
  it('bare number, with receipt time and default unit and status', () => {
    const r = parse(' 23.5 \n', 'sensors/7/1/r/humidity');
    expect(r.readings[0]).toMatchObject({
      value: 23.5,
      unit: 'percent',
      status: 'normal',
      timestampMs: NOW,
      building: 'building_007',
    });
  });
  it('value as a numeric string', () => {
    expect(parse('{"value":"  -1.5e2 "}').readings[0]?.value).toBe(-150);
  });
  it('default units per sensor type', () => {
    const units = ['temperature', 'humidity', 'power', 'energy', 'illuminance', 'co2', 'vibration'].map(
      (t) => parse('1', `sensors/1/1/r/${t}`).readings[0]?.unit,
    );
    expect(units).toEqual(['celsius', 'percent', 'W', 'kWh', 'lux', 'ppm', '']);
  });
  it('extra fields keep their types and order', () => {
    const r = parse('{"value":1,"battery":87,"ok":true,"fw":"1.2.3"}');
    expect(r.readings[0]?.extra).toEqual([
      ['battery', 87],
      ['ok', true],
      ['fw', '1.2.3'],
    ]);
  });
  it('arrays: each element its own reading, bad elements rejected alone', () => {
    const r = parse('[{"value":1},{"value":"x"},{"value":3,"timestamp":1705314540}]');
    expect(r.readings.map((x) => x.value)).toEqual([1, 3]);
    expect(r.readings[1]?.timestampMs).toBe(1705314540000);
    expect(r.rejections).toHaveLength(1);
    expect(r.rejections[0]).toMatchObject({ reason: 'bad_value' });
    expect(r.rejections[0]?.detail).toMatch(/^element 1:/);
    expect(r.rejections[0]?.payload.toString()).toBe('{"value":"x"}');
  });
  it('arrays of more than 1000 readings are rejected', () => {
    const big = JSON.stringify(Array.from({ length: 1001 }, () => ({ value: 1 })));
    expect(parse(big).rejections[0]?.reason).toBe('bad_value');
    const ok = JSON.stringify(Array.from({ length: 1000 }, () => ({ value: 1 })));
    expect(parse(ok).readings).toHaveLength(1000);
  });
});

describe('rejections', () => {
  const reason = (payload: string | Buffer, topic?: string) =>
    parse(payload, topic).rejections.map((r) => r.reason);
  it.each([
    ['{"value": 23.5,', 'bad_json'],
    ['', 'bad_json'],
    ['hello', 'bad_json'],
    ['NaN', 'bad_value'],
    ['-Infinity', 'bad_value'],
    ['{"value": null}', 'bad_value'],
    ['{"unit": "W"}', 'bad_value'],
    ['{"value": "warm"}', 'bad_value'],
    ['{"value": 1e999}', 'bad_value'],
    ['{"value": 1, "unit": 5}', 'bad_value'],
    [`{"value": 1, "status": "${'x'.repeat(33)}"}`, 'bad_value'],
    ['{"value": 1, "nested": {"a": 1}}', 'bad_value'],
    ['{"value": 1, "time": 5}', 'bad_value'],
    ['{"value": 1, "_x": 5}', 'bad_value'],
    ['{"value": 1, "a\\\\b": 5}', 'bad_value'],
    ['{"value": 1, "k\\"ey": 5}', 'bad_value'], // VictoriaMetrics misreads the line (issue 12)
    ['{"value": 1, "a\\nb": 5}', 'bad_value'],
    ['"23.5"', 'bad_value'],
    ['[]', 'bad_value'],
    ['{"value": 1, "timestamp": "yesterday"}', 'bad_timestamp'],
    ['{"value": 1, "timestamp": "2024-01-15T10:30:00"}', 'bad_timestamp'],
    ['{"value": 1, "timestamp": -5}', 'bad_timestamp'],
    ['{"value": 1, "timestamp": "2024-01-15T10:36:00Z"}', 'timestamp_out_of_range'],
    ['{"value": 1, "timestamp": "2024-01-01T00:00:00Z"}', 'timestamp_out_of_range'],
    // beyond what a Date can hold: refused, not a RangeError out of parseMessage (found by parseFast.test.ts)
    ['{"value": 1, "timestamp": 1e300}', 'timestamp_out_of_range'],
    ['{"value": 1, "timestamp": 8.64e15}', 'timestamp_out_of_range'],
    ['{"value": 1, "timestamp": 8640000000000001}', 'timestamp_out_of_range'],
  ])('%j → %s', (payload, expected) => {
    expect(reason(payload)).toEqual([expected]);
  });
  it('17 extra fields are too many, 16 are fine', () => {
    const mk = (n: number) =>
      JSON.stringify(
        Object.fromEntries([['value', 1], ...Array.from({ length: n }, (_, i) => [`f${i}`, i])]),
      );
    expect(reason(mk(16))).toEqual([]);
    expect(reason(mk(17))).toEqual(['bad_value']);
  });
  it('invalid UTF-8 is bad_json', () => {
    expect(reason(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]))).toEqual(['bad_json']);
  });
  it('oversized payloads are payload_too_large before anything else', () => {
    expect(reason(Buffer.alloc(65537, 0x31), 'not/a/sensor/topic')).toEqual(['payload_too_large']);
  });
  it('bad topics are bad_topic', () => {
    expect(reason('1', 'sensors/1/2/3')).toEqual(['bad_topic']);
  });
  it('never throws, whatever the bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.string({ maxLength: 80 }), (bytes, topic) => {
        const r = parseMessage(`sensors/${topic}`, Buffer.from(bytes), NOW, LIMITS);
        return r.readings.length + r.rejections.length >= 1;
      }),
      { numRuns: 2000 },
    );
  });
  it('any finite number round-trips through every form', () => {
    fc.assert(
      fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), (v) => {
        const forms = [
          String(v),
          JSON.stringify({ value: v }),
          JSON.stringify([{ value: v }]),
          JSON.stringify({ value: String(v) }),
        ];
        return forms.every((f) => parse(f).readings[0]?.value === v);
      }),
    );
  });
});

describe('timestamps', () => {
  it.each([
    ['2024-01-15T10:30:00Z', Date.parse('2024-01-15T10:30:00Z')],
    ['2024-01-15T19:30:00+09:00', Date.parse('2024-01-15T10:30:00Z')],
    ['2024-01-15T19:30:00+0900', Date.parse('2024-01-15T10:30:00Z')],
    ['2024-01-15T19:30:00+09', Date.parse('2024-01-15T10:30:00Z')],
    ['2024-01-15 10:30:00.250Z', Date.parse('2024-01-15T10:30:00.250Z')],
    [1705314600, 1705314600000],
    [1705314600.5, 1705314600500],
    [1705314600123, 1705314600123],
    ['1705314600', 1705314600000],
  ])('%j → %d', (raw, ms) => {
    expect(parseTimestamp(raw)).toEqual({ ok: true, ms });
  });
  it('rejects dates that do not exist', () => {
    expect(parseTimestamp('2024-13-45T10:30:00Z').ok).toBe(false);
  });
});

describe('unit and status length (32 UTF-8 bytes)', () => {
  it('counts bytes, not characters, around the limit', () => {
    const unit = (u: string) => parse(JSON.stringify({ value: 1, unit: u })).rejections.map((r) => r.reason);
    expect(unit('a'.repeat(32))).toEqual([]);
    expect(unit('a'.repeat(33))).toEqual(['bad_value']);
    expect(unit('€'.repeat(10))).toEqual([]); // 30 bytes
    expect(unit('€'.repeat(11))).toEqual(['bad_value']); // 33 bytes in 11 characters
    expect(unit(`${'a'.repeat(30)}€`)).toEqual(['bad_value']); // 33 bytes in 31 characters
  });
});
