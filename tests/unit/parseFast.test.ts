import { describe, expect, it } from 'vitest';
import { type ParseResult, parseMessage, parseMessageSlow, parsePaths } from '../../src/ingest/parse.js';

// parseMessage reads the common payload shapes straight from their bytes (the
// fast path, issue 15) and hands anything else to the JSON.parse path. The two
// must give the same readings and rejections for every payload: this compares
// them on generated payloads, common and hostile.

const NOW = Date.parse('2025-11-30T23:00:00Z'); // 1764543600000, as the simulator's payloads
const LIMITS = { maxPayloadBytes: 65536, maxFutureSkewS: 300, maxAgeS: 604800 };
const TOPICS = [
  'sensors/building_001/3/office_301/temperature',
  'sensors/building_001/3/office_301/humidity',
  'sensors/7/ground/hall/power',
  'sensors/building_042/2/lab/vibration',
];

/** Seeded, so a failure replays. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The result as comparable text: -0 kept apart from 0, Buffers as bytes, `text` (slow path only)
 * and where the value's text is (fast path only: valueAt/valueEnd, tested on their own) left out.
 */
function canon(r: ParseResult): string {
  const { text: _text, ...rest } = r;
  return JSON.stringify(rest, (k, v) =>
    k === 'valueAt' || k === 'valueEnd' ? undefined : Object.is(v, -0) ? '-0' : v,
  );
}

function both(topic: string, payload: Buffer): { fast: string; slow: string; tookFast: boolean } {
  const before = parsePaths.fast;
  const fast = parseMessage(topic, payload, NOW, LIMITS);
  const tookFast = parsePaths.fast > before;
  const slow = parseMessageSlow(topic, payload, NOW, LIMITS);
  if (tookFast) expect(fast.text).toBeUndefined();
  return { fast: canon(fast), slow: canon(slow), tookFast };
}

const GOOD_NUMBERS = [
  '0',
  '-0',
  '0.0',
  '-0.0',
  '21.37',
  '-21.37',
  '1e5',
  '1E5',
  '1e+5',
  '1e-5',
  '2.5E-3',
  '-0e0',
  '0e-400',
  '123456789012345',
  '1234567890123456',
  '12345678901234567890',
  '9007199254740993',
  '0.1234567890123456789',
  '0.30000000000000004',
  '1.7976931348623157e308',
  '1e308',
  '5e-324',
  '2.2250738585072014e-308',
  '1e-400',
  '1e22',
  '1e23',
  '123e20',
  '1.5e-22',
  '1.5e-23',
  '4.35',
  '0.000001',
  '1764543600000',
  '1764543600',
  '1764543600.5',
  '1e309',
  '-1e309',
  '1e0000000000000000001',
];
const BAD_NUMBERS = [
  '01',
  '1.',
  '.5',
  '+1',
  'NaN',
  'Infinity',
  '-',
  '1e',
  '1e+',
  '--1',
  '0x10',
  '1_0',
  '-.5',
  '00',
];

function randomNumber(r: () => number): string {
  const k = Math.floor(r() * 8);
  if (k === 0) return GOOD_NUMBERS[Math.floor(r() * GOOD_NUMBERS.length)]!;
  if (k === 1) return BAD_NUMBERS[Math.floor(r() * BAD_NUMBERS.length)]!;
  if (k === 2) return String(Math.round(r() * 1e6) / 10 ** Math.floor(r() * 8));
  if (k === 3) return String((r() - 0.5) * 10 ** Math.floor(r() * 40 - 20));
  if (k === 4) return `${Math.floor(r() * 1000)}e${Math.floor(r() * 60 - 30)}`;
  if (k === 5) return (r() * 100).toFixed(Math.floor(r() * 20));
  if (k === 6) return String(Math.floor(r() * 2 ** 53) * (r() < 0.5 ? 1 : -1));
  return `${r() < 0.3 ? '-' : ''}${Math.floor(r() * 1000)}.${String(Math.floor(r() * 1e9)).padStart(9, '0')}`;
}

const CHARS = 'abcXYZ 09_-./:%°"\\\t\u00e9\u20ac\ud83d\ude00';
function randomString(r: () => number): string {
  const k = Math.floor(r() * 10);
  if (k === 0) return '';
  if (k === 1) return 'x'.repeat(30 + Math.floor(r() * 6)); // around the 32-byte label limit
  if (k === 2) return 'y'.repeat(1020 + Math.floor(r() * 8)); // around the 1024-byte extra limit
  if (k < 6)
    return ['celsius', 'W', 'kWh', 'percent', 'normal', 'fault', 'v1.2.3', 'a b'][Math.floor(r() * 8)]!;
  let s = '';
  const n = Math.floor(r() * 12);
  for (let i = 0; i < n; i++) s += CHARS[Math.floor(r() * CHARS.length)];
  return s;
}

function randomTimestamp(r: () => number): string {
  const k = Math.floor(r() * 12);
  const ms = NOW - Math.floor(r() * 1000 * 3600);
  if (k < 3) return String(ms);
  if (k === 3) return String(Math.floor(ms / 1000));
  if (k === 4) return String(ms / 1000);
  if (k === 5) return JSON.stringify(new Date(ms).toISOString());
  if (k === 6) return String(NOW + 301_000 + Math.floor(r() * 1e6)); // too far ahead
  if (k === 7) return String(NOW - 604_801_000 - Math.floor(r() * 1e6)); // too old
  if (k === 8)
    return ['-1', '0', '1e400', 'true', 'null', '"1764543600"', '"yesterday"', '{}'][Math.floor(r() * 8)]!;
  if (k === 9) return String(NOW + 300_000 + Math.floor(r() * 3) - 1); // at the future limit
  if (k === 10) return JSON.stringify('2026-11-30T23:00:00+01:00');
  return randomNumber(r);
}

const EXTRA_KEYS = [
  'battery',
  'rssi',
  'firmware',
  'ok',
  'Value',
  'a b',
  'x.y',
  'constructor',
  'toString',
  'k'.repeat(64),
  'k'.repeat(65),
];
const ODD_KEYS = [
  '1',
  '42',
  '01',
  '_x',
  '__proto__',
  'time',
  'building_id',
  'room',
  '',
  'a\\u0041',
  'caf\u00e9',
];

function randomScalar(r: () => number): string {
  const k = Math.floor(r() * 10);
  if (k < 4) return randomNumber(r);
  if (k < 7) return JSON.stringify(randomString(r));
  if (k === 7) return r() < 0.5 ? 'true' : 'false';
  if (k === 8) return 'null';
  return ['{}', '[]', '[1]', '{"a":1}', '"a\\"b"', '"\\u00b0C"', 'tru', 'nul'][Math.floor(r() * 8)]!;
}

const WS = [' ', '\t', '\n', '\r', '  ', '\u000b', '\u000c', '\u00a0'];
function ws(r: () => number): string {
  const k = r();
  if (k < 0.8) return '';
  if (k < 0.97) return WS[Math.floor(r() * 5)]!;
  return WS[Math.floor(r() * WS.length)]!;
}

function randomPayload(r: () => number): string {
  const shape = r();
  if (shape < 0.1) return ws(r) + randomNumber(r) + ws(r);
  const members: [string, string][] = [];
  if (r() < 0.9) members.push(['value', r() < 0.85 ? randomNumber(r) : randomScalar(r)]);
  if (r() < 0.6) members.push(['unit', r() < 0.9 ? JSON.stringify(randomString(r)) : randomScalar(r)]);
  if (r() < 0.2) members.push(['status', r() < 0.9 ? JSON.stringify(randomString(r)) : randomScalar(r)]);
  if (r() < 0.7) members.push(['timestamp', randomTimestamp(r)]);
  const extras = r() < 0.5 ? 0 : Math.floor(r() * (r() < 0.1 ? 20 : 4));
  for (let i = 0; i < extras; i++) {
    const key =
      r() < 0.85
        ? r() < 0.5
          ? EXTRA_KEYS[Math.floor(r() * EXTRA_KEYS.length)]!
          : `f${Math.floor(r() * 30)}`
        : ODD_KEYS[Math.floor(r() * ODD_KEYS.length)]!;
    members.push([key, randomScalar(r)]);
  }
  if (r() < 0.05 && members.length) members.push(members[Math.floor(r() * members.length)]!); // duplicate key
  // shuffle now and then: key order is part of the result (extra)
  if (r() < 0.3) members.sort(() => r() - 0.5);
  let s = `${ws(r)}{${ws(r)}`;
  s += members
    .map(([k, v]) => `${JSON.stringify(k).replace('\\\\u', '\\u')}${ws(r)}:${ws(r)}${v}`)
    .join(`${ws(r)},${ws(r)}`);
  s += `${ws(r)}}${ws(r)}`;
  const mutate = r();
  if (mutate < 0.03) return s.slice(0, Math.floor(r() * s.length)); // truncated
  if (mutate < 0.05) return `${s}x`;
  if (mutate < 0.06) return `[${s}]`;
  if (mutate < 0.07) return s.replace('}', ',}');
  return s;
}

describe('parse fast path', () => {
  it('gives the slow path result for thousands of generated payloads', () => {
    const r = rng(15);
    let fast = 0;
    let readings = 0;
    const N = 20_000;
    for (let n = 0; n < N; n++) {
      const text = randomPayload(r);
      let payload = Buffer.from(text);
      if (r() < 0.02 && payload.length) {
        // invalid UTF-8, DEL, a NUL
        payload = Buffer.from(payload);
        payload[Math.floor(r() * payload.length)] = [0x80, 0xff, 0x7f, 0x00, 0xc3][Math.floor(r() * 5)]!;
      }
      const topic = TOPICS[Math.floor(r() * TOPICS.length)]!;
      const got = both(topic, payload);
      if (got.fast !== got.slow) {
        // the failing payload in the message
        expect({ payload: payload.toString('latin1'), result: got.fast }).toEqual({
          payload: payload.toString('latin1'),
          result: got.slow,
        });
      }
      if (got.tookFast) fast++;
      if (got.slow.startsWith('{"readings":[{')) readings++;
    }
    // the generator must reach both paths, and the fast path must serve most accepted readings
    expect(fast).toBeGreaterThan(N / 5);
    expect(fast).toBeLessThan(readings);
    expect(readings).toBeLessThan(N);
  });

  it('gives the slow path result for hand-picked edge cases', () => {
    const cases = [
      '21.37',
      ' 21.37\n',
      '-0',
      '1e400',
      '01',
      '1.',
      '.5',
      '+1',
      'NaN',
      '"21.5"',
      'true',
      'null',
      '',
      '   ',
      '{}',
      '[]',
      '[{"value":1}]',
      '{"value":21.37,"unit":"celsius","timestamp":1764543600000}',
      '{"value":21.37,"timestamp":1764543600000}',
      '{"value":21.37,"timestamp":1764543600}',
      '{"value":21.37,"timestamp":"2026-11-30T23:00:00.000Z"}',
      '{"value":21.37,"timestamp":"2026-11-30 23:00:00+0100"}',
      '{"value":"21.5"}',
      '{"value":null}',
      '{"unit":"W"}',
      '{"value":1,"value":2}',
      '{"value":1,"unit":"W","unit":"kW"}',
      '{"value":1,"a":1,"a":2}',
      '{"value":1,"1":true,"b":2}',
      '{"value":1,"b":2,"0":true}',
      '{"value":1,"__proto__":1}',
      '{"value":1,"time":1}',
      '{"value":1,"_x":1}',
      '{"value":1,"":1}',
      '{"value":1,"x":null}',
      '{"value":1,"x":{}}',
      '{"value":1,"x":[1]}',
      '{"value":1,"unit":null,"status":null,"timestamp":null}',
      '{"value":1,"unit":"","status":""}',
      '{"value":1,"unit":5}',
      '{"value":1,"unit":"a\\"b"}',
      '{"value":1,"unit":"°C"}',
      '{"value":1,"status":"x y z","fw":"v1 \\"beta\\""}',
      '{"value":1,"on":true,"off":false,"n":-0,"s":"a b"}',
      '{"value":1,"timestamp":-1}',
      '{"value":1,"timestamp":1e400}',
      '{"value":1,"timestamp":true}',
      '{"value":1,"timestamp":"1764543600"}',
      '{"value":1}x',
      '{"value":1,}',
      '{"value":1',
      '{"value":1 "unit":"W"}',
      '{ "value" : 1 , "unit" : "W" }',
      '\t{\r\n"value":\t1}\n',
      '\u000b{"value":1}',
      '{"value":1}\u000c',
      '{"value":truex}',
      '{"value":1,"b":tru}',
      `{"value":1,${Array.from({ length: 16 }, (_, i) => `"f${i}":${i}`).join(',')}}`,
      `{"value":1,${Array.from({ length: 17 }, (_, i) => `"f${i}":${i}`).join(',')}}`,
    ];
    for (const text of cases)
      for (const topic of TOPICS) {
        const got = both(topic, Buffer.from(text));
        expect({ text, topic, result: got.fast }).toEqual({ text, topic, result: got.slow });
      }
  });

  it('reads every number as the same double as JSON.parse', () => {
    const r = rng(754);
    const bits = new Float64Array(1);
    const words = new Uint32Array(bits.buffer);
    let fast = 0;
    const N = 20_000;
    for (let n = 0; n < N; n++) {
      // any finite double, and short decimals near the 15-digit and 10^22 edges of the exact path
      let x: number;
      if (r() < 0.5) {
        words[0] = Math.floor(r() * 2 ** 32);
        words[1] = Math.floor(r() * 2 ** 32);
        x = bits[0]!;
        if (!Number.isFinite(x)) continue;
      } else x = Math.floor(r() * 10 ** Math.floor(r() * 18)) * 10 ** Math.floor(r() * 50 - 25);
      const k = 1 + Math.floor(r() * 20);
      for (const text of [
        String(x),
        x.toExponential(k),
        x.toPrecision(k),
        x.toExponential(k).replace('e+', 'E'),
      ]) {
        const before = parsePaths.fast;
        const got = parseMessage(TOPICS[0]!, Buffer.from(`{"value":${text}}`), NOW, LIMITS);
        if (parsePaths.fast > before) fast++;
        const want = (JSON.parse(`{"value":${text}}`) as { value: number }).value;
        if (!Object.is(got.readings[0]?.value, want))
          expect({ text, got: got.readings[0]?.value }).toEqual({ text, got: want });
      }
    }
    expect(fast).toBeGreaterThan(N);
  });

  it('reads ISO timestamps as the slow path does, valid or not', () => {
    // limits wide enough to take any date: the ms themselves are compared, not the range checks
    const wide = { maxPayloadBytes: 65536, maxFutureSkewS: 1e13, maxAgeS: 1e13 };
    const r = rng(8601);
    const pad = (n: number, w: number) => String(n).padStart(w, '0');
    let fast = 0;
    const N = 5000;
    for (let n = 0; n < N; n++) {
      let iso: string;
      const k = r();
      if (k < 0.6) {
        iso = new Date(Math.floor(r() * 2 ** 38 * (r() < 0.1 ? 1 : 1000))).toISOString();
        if (r() < 0.3) iso = `${iso.slice(0, 19)}Z`;
      } else {
        // every field at and beyond its limits: day 29-31 of each month, hour 24, second 60, years near 1970
        const y = [1969, 1970, 1999, 2000, 2023, 2024, 2025, 2100, 2400, 9999][Math.floor(r() * 10)]!;
        const mo = Math.floor(r() * 14);
        const d = Math.floor(r() * 33);
        const h = Math.floor(r() * 26);
        const mi = Math.floor(r() * 61);
        const sec = Math.floor(r() * 61);
        iso = `${pad(y, 4)}-${pad(mo, 2)}-${pad(d, 2)}T${pad(h, 2)}:${pad(mi, 2)}:${pad(sec, 2)}`;
        iso += r() < 0.5 ? `.${pad(Math.floor(r() * 1000), 3)}Z` : 'Z';
        if (r() < 0.1) iso = iso.replace('T', ' ');
        if (r() < 0.1) iso = iso.replace('Z', '+01:00');
        if (r() < 0.05) iso = iso.replace(/\d/, 'x');
      }
      const payload = Buffer.from(`{"value":1,"timestamp":"${iso}"}`);
      const before = parsePaths.fast;
      const got = canon(parseMessage(TOPICS[0]!, payload, NOW, wide));
      if (parsePaths.fast > before) fast++;
      const want = canon(parseMessageSlow(TOPICS[0]!, payload, NOW, wide));
      if (got !== want) expect({ iso, got }).toEqual({ iso, got: want });
    }
    expect(fast).toBeGreaterThan(N / 2);
  });

  it('marks where the value is written in the payload only when those bytes are String(value) (issue 15)', () => {
    const r = rng(15);
    const digits = (n: number) => Array.from({ length: n }, () => String(Math.floor(r() * 10))).join('');
    const texts: string[] = [
      '0',
      '-0',
      '0.5',
      '-0.5',
      '21.37',
      '100',
      '0.000001',
      '0.0000001',
      '1.0',
      '1.50',
      '1e3',
    ];
    for (let k = 0; k < 20_000; k++) {
      const pick = r();
      if (pick < 0.3)
        texts.push(JSON.stringify(r() * 10 ** Math.floor(r() * 30 - 15) * (r() < 0.5 ? -1 : 1)));
      else if (pick < 0.5) texts.push(String(Math.floor(r() * 1e6) - 5e5));
      else if (pick < 0.8) {
        const int = r() < 0.3 ? '0' : String(1 + Math.floor(r() * 9)) + digits(Math.floor(r() * 12));
        texts.push(`${r() < 0.3 ? '-' : ''}${int}.${digits(1 + Math.floor(r() * 14))}`);
      } else
        texts.push(
          `${r() < 0.5 ? '-' : ''}0.${'0'.repeat(Math.floor(r() * 9))}${digits(1 + Math.floor(r() * 4))}`,
        );
    }
    let marked = 0;
    for (const text of texts) {
      for (const payload of [
        text,
        `{"value":${text},"unit":"celsius"}`,
        `{ "unit": "W", "value": ${text} }`,
      ]) {
        const b = Buffer.from(payload);
        const got = parseMessage(TOPICS[0]!, b, NOW, LIMITS).readings[0];
        if (!got || (got.valueAt ?? -1) < 0) continue;
        marked++;
        expect(b.toString('latin1', got.valueAt, got.valueEnd)).toBe(String(got.value));
      }
    }
    // the usual ones are marked
    for (const text of ['21.37', '-3.5', '0', '450', '0.25', '0.000001', '123456789012345']) {
      const got = parseMessage(TOPICS[0]!, Buffer.from(`{"value":${text}}`), NOW, LIMITS).readings[0]!;
      expect(got.valueAt, text).toBe(9);
    }
    for (const text of ['-0', '1.0', '0.0000001', '1e3', '1234567890123456', '0.30000000000000004']) {
      const got = parseMessage(TOPICS[0]!, Buffer.from(`{"value":${text}}`), NOW, LIMITS).readings[0]!;
      expect(got.valueAt ?? -1, text).toBe(-1);
    }
    expect(marked).toBeGreaterThan(30_000);
  });

  it('takes the fast path for the payloads sensors send', () => {
    const common = [
      '{"value":21.37,"unit":"celsius","timestamp":1764543600000}',
      '{"value":21.37,"timestamp":1764543600000}',
      '21.37',
      '{"value":21.37,"unit":"celsius","timestamp":"2025-11-30T23:00:00.000Z","battery":87,"fw":"v1.2","ok":true}',
    ];
    for (const text of common) {
      const before = parsePaths.fast;
      const res = parseMessage(TOPICS[0]!, Buffer.from(text), NOW, LIMITS);
      expect(parsePaths.fast, text).toBe(before + 1);
      expect(res.readings).toHaveLength(1);
      expect(res.rejections).toHaveLength(0);
    }
  });

  it('reuses the topic’s last unit string and follows a change of unit', () => {
    const topic = TOPICS[2]!;
    const a = parseMessage(topic, Buffer.from('{"value":1,"unit":"kW"}'), NOW, LIMITS).readings[0]!;
    const b = parseMessage(topic, Buffer.from('{"value":2,"unit":"kW"}'), NOW, LIMITS).readings[0]!;
    const c = parseMessage(topic, Buffer.from('{"value":3,"unit":"kV"}'), NOW, LIMITS).readings[0]!;
    expect([a.unit, b.unit, c.unit]).toEqual(['kW', 'kW', 'kV']);
    expect(parseMessage(topic, Buffer.from('{"value":4}'), NOW, LIMITS).readings[0]!.unit).toBe('W');
  });
});
