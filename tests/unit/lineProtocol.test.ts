import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeReading, escapeTag, quoteString, UnencodableError } from '../../src/ingest/lineProtocol.js';
import { readLine } from '../../src/ingest/lineProtocolReader.js';
import type { Reading } from '../../src/ingest/reading.js';
import { aReading } from '../helpers/reading.js';

const base = aReading();

// Label-like strings: printable, including every character the protocol cares about.
const hostile = fc
  .string({
    unit: fc.oneof(
      fc.constantFrom(',', ' ', '=', '"', '\\', "'", '한', '글', '🌡', 'a', 'Z', '0', '#', '+', '/'),
      fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }),
    ),
    minLength: 1,
    maxLength: 20,
  })
  .filter((s) => !/[\u0000-\u001f\u007f-\u009f]/.test(s));

describe('line protocol', () => {
  it('writes the documented shape', () => {
    expect(encodeReading(base, 'escape')).toBe(
      'sensor_readings,building_id=building_001,floor=3,room=office_301,sensor_type=temperature value=23.5,unit="celsius",status="normal" 1705314600000',
    );
  });
  it('escapes tags per mode', () => {
    expect(escapeTag('a b,c=d\\e', 'escape')).toBe('a\\ b\\,c\\=d\\\\e');
    expect(escapeTag('a b,c=d\\e', 'literal')).toBe('a\\ b\\,c\\=d\\e');
    expect(() => escapeTag('end\\', 'literal')).toThrow(UnencodableError);
    expect(escapeTag('end\\', 'escape')).toBe('end\\\\');
  });
  it('quotes strings: raw line breaks for InfluxDB, escaped ones for everything else', () => {
    expect(quoteString('say "hi"\\\nok', 'raw')).toBe('"say \\"hi\\"\\\\\nok"');
    expect(quoteString('say "hi"\\\nok\r', 'escape')).toBe('"say \\"hi\\"\\\\\\nok\\r"');
    expect(quoteString('a\nb')).toBe('"a\\nb"'); // escape is the default
  });
  it('escape mode: no line break in any line, whatever the strings hold (issue 12 item 1)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), fc.string({ unit: 'binary' }), (s, t) => {
        const line = encodeReading({ ...base, status: s, unit: t, extra: [['note', `${s}${t}`]] }, 'escape');
        expect(line).not.toMatch(/[\n\r]/);
        // read as InfluxDB would: the break shows as a backslash and a letter, nothing else changes
        const p = readLine(line, 'escape');
        const shown = (x: string) => x.replace(/\n/g, '\\n').replace(/\r/g, '\\r');
        expect([p.fields.status, p.fields.unit, p.fields.note]).toEqual([shown(s), shown(t), shown(s + t)]);
        expect(p.tags.building_id).toBe('building_001');
      }),
      { numRuns: 2000 },
    );
  });
  it('extra fields: numbers as floats, booleans bare, strings quoted', () => {
    const line = encodeReading(
      {
        ...base,
        extra: [
          ['battery', 87],
          ['ok', false],
          ['fw', 'v "2"'],
        ],
      },
      'escape',
    );
    expect(line).toContain(',battery=87,ok=false,fw="v \\"2\\"" ');
  });

  for (const mode of ['escape', 'literal'] as const) {
    it(`every tag and string reads back exactly (${mode})`, () => {
      fc.assert(
        fc.property(
          hostile,
          hostile,
          hostile,
          fc.string({ maxLength: 30 }),
          fc.double({ noNaN: true, noDefaultInfinity: true }),
          (floor, room, type, status, value) => {
            const r: Reading = { ...base, floor, room, sensorType: type, status, unit: `${room}\n"`, value };
            let line: string;
            try {
              line = encodeReading(r, mode, 'raw');
            } catch (err) {
              // only a trailing backslash in literal mode is unencodable
              return (
                mode === 'literal' &&
                err instanceof UnencodableError &&
                [floor, room, type].some((s) => s.endsWith('\\'))
              );
            }
            const p = readLine(line, mode);
            expect(p.measurement).toBe('sensor_readings');
            expect(p.tags).toEqual({ building_id: 'building_001', floor, room, sensor_type: type });
            expect(p.fields.status).toBe(status);
            expect(p.fields.unit).toBe(`${room}\n"`);
            expect(p.fields.value).toBe(value === 0 ? 0 : value);
            expect(p.timestamp).toBe(base.timestampMs);
            return true;
          },
        ),
        { numRuns: 3000 },
      );
    });
  }

  it('a line has no raw newline outside string fields', () => {
    fc.assert(
      fc.property(fc.string(), (s) => {
        const line = encodeReading({ ...base, status: s, unit: s }, 'escape');
        const outside = line.replace(/"(?:[^"\\]|\\.)*"/gs, '');
        return !outside.includes('\n');
      }),
    );
  });
});

describe('per-topic caches (issue 15: the series key and the quoted unit are kept on the topic)', () => {
  it('readings of one topic give the same lines as fresh readings, whatever units, statuses and modes follow each other', () => {
    const unit = fc.oneof(fc.constantFrom('°C', 'kWh', 'normal'), fc.string({ maxLength: 6 }));
    const status = fc.oneof(fc.constant('normal'), fc.string({ maxLength: 6 }));
    const newlines = fc.constantFrom('raw' as const, 'escape' as const);
    fc.assert(
      fc.property(fc.array(fc.tuple(unit, status, newlines), { minLength: 1, maxLength: 20 }), (seq) => {
        // one slot shared by every reading, as ingest/parse.ts shares it per topic
        const lpKeys = {};
        for (const [u, st, nl] of seq) {
          const shared = aReading({ unit: u, status: st, lpKeys });
          const fresh = aReading({ unit: u, status: st });
          expect(encodeReading(shared, 'escape', nl)).toBe(encodeReading(fresh, 'escape', nl));
          expect(encodeReading(shared, 'escape', nl)).toContain(`unit=${quoteString(u, nl)}`);
        }
      }),
    );
  });
});
