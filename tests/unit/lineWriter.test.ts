import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeReading, UnencodableError, writeLine, writeText } from '../../src/ingest/lineProtocol.js';
import { parseMessage } from '../../src/ingest/parse.js';
import type { LpKeys, Reading } from '../../src/ingest/reading.js';
import { aReading } from '../helpers/reading.js';

// writeLine (issue 15) writes a reading's line straight into the durable log's
// chunk: its bytes must be exactly encodeReading's, whatever the strings hold,
// also when the topic's cached keys and unit are reused by later readings.

const label = fc
  .string({
    unit: fc.oneof(
      fc.constantFrom(',', ' ', '=', '"', '\\', '\n', '한', '🌡', 'a', 'Z', '0', '°'),
      fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }),
    ),
    minLength: 1,
    maxLength: 40,
  })
  .filter((s) => s.isWellFormed());

const reading = fc.record({
  floor: label,
  room: label,
  sensorType: label,
  value: fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.integer()),
  unit: fc.oneof(fc.constant('celsius'), fc.constant(''), label),
  status: fc.oneof(fc.constant('normal'), label),
  extra: fc.array(
    fc.tuple(
      fc.stringMatching(/^[a-z][a-z0-9_]{0,10}$/),
      fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), label),
    ),
    { maxLength: 3 },
  ),
  timestampMs: fc.oneof(fc.integer({ min: 0, max: 4102444800000 }), fc.constant(1705314600000)),
});

function written(r: Reading, mode: 'escape' | 'literal', newlines: 'raw' | 'escape'): string {
  const buf = Buffer.alloc(8192, 0xee);
  const end = writeLine(buf, 7, buf.length, r, mode, newlines);
  expect(end).toBeGreaterThan(7);
  // nothing written before the start
  expect(buf.subarray(0, 7).every((b) => b === 0xee)).toBe(true);
  return buf.toString('utf8', 7, end);
}

describe('writeLine', () => {
  it('writes encodeReading bytes for any reading, both modes, cold and with cached keys', () => {
    fc.assert(
      fc.property(
        reading,
        fc.constantFrom('escape', 'literal'),
        fc.constantFrom('raw', 'escape'),
        (over, mode, newlines) => {
          const keys: LpKeys = {};
          const r = aReading({ ...over, lpKeys: keys });
          let expected: string;
          try {
            expected = encodeReading(aReading(over), mode, newlines);
          } catch (err) {
            expect(err).toBeInstanceOf(UnencodableError);
            expect(() => written(r, mode, newlines)).toThrow(UnencodableError);
            return;
          }
          expect(written(r, mode, newlines)).toBe(expected);
          // second reading of the same topic: cached key and unit bytes
          expect(written(r, mode, newlines)).toBe(expected);
          // the unit changes on the topic: the cache follows
          const other = aReading({ ...over, unit: `${over.unit}x`, lpKeys: keys });
          expect(written(other, mode, newlines)).toBe(
            encodeReading(aReading({ ...over, unit: `${over.unit}x` }), mode, newlines),
          );
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('copies the value’s own text from the payload when the parser marked it (issue 15)', () => {
    for (const text of ['21.37', '-0.5', '450', '0', '0.000001']) {
      const payload = Buffer.from(`{"value":${text},"unit":"celsius","timestamp":1705314600000}`);
      const r = parseMessage('sensors/building_001/3/office_301/temperature', payload, 1705314600000, {
        maxPayloadBytes: 65536,
        maxFutureSkewS: 300,
        maxAgeS: 604800,
      }).readings[0]!;
      expect(r.valueAt).toBeGreaterThan(0);
      const buf = Buffer.alloc(1024);
      const end = writeLine(buf, 0, buf.length, r, 'escape', 'escape', payload);
      expect(buf.toString('utf8', 0, end)).toBe(encodeReading(r, 'escape'));
      expect(buf.toString('utf8', 0, end)).toContain(` value=${text},`);
    }
  });

  it('refuses to write past the limit (-1) and writes what fits exactly', () => {
    const r = aReading();
    const line = encodeReading(r, 'escape');
    const buf = Buffer.alloc(4096);
    expect(writeLine(buf, 0, 20, r, 'escape')).toBe(-1);
    const end = writeLine(buf, 0, buf.length, r, 'escape');
    expect(buf.toString('utf8', 0, end)).toBe(line);
  });

  it('writes timestamps that are not safe integers as String() does', () => {
    for (const ts of [0, 9, 10, 1705314600000, 2 ** 53 + 2, 1e21, -5, 1.5]) {
      expect(written(aReading({ timestampMs: ts }), 'escape', 'escape')).toBe(
        encodeReading(aReading({ timestampMs: ts }), 'escape'),
      );
    }
  });

  it('writeText: UTF-8 as Buffer.write, short and long, ASCII or not', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 100 }), fc.string({ maxLength: 5 }), (s, pre) => {
        const text = pre + s;
        const buf = Buffer.alloc(text.length * 3 + 10);
        const end = writeText(buf, 3, text);
        expect(buf.toString('utf8', 3, end)).toBe(Buffer.from(text).toString('utf8'));
        expect(end - 3).toBe(Buffer.byteLength(text));
      }),
    );
  });
});
