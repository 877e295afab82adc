import { isUtf8 } from 'node:buffer';
import { canonicalBuildingKey } from './building.js';
import type { ExtraValue, LpKeys, Reading, Rejection, RejectReason } from './reading.js';
import { epochNumberMs, parseTimestamp } from './timestamp.js';
import { parseSensorTopic, type SensorTopic, segmentProblem, type TopicResult } from './topic.js';
import { defaultUnit } from './units.js';

// Payload → Readings (contract section 4). Pure: the receipt time and the
// limits come in as arguments, so a replay of the same message yields the
// same readings.

export interface ParseLimits {
  readonly maxPayloadBytes: number;
  readonly maxFutureSkewS: number;
  readonly maxAgeS: number;
}

export interface ParseResult {
  readonly readings: Reading[];
  /** shared and frozen when empty: copy before adding to it */
  readonly rejections: readonly Rejection[];
  /** the payload decoded as UTF-8, when it was */
  readonly text?: string;
}

const NO_EXTRA: Reading['extra'] = Object.freeze([]);
const NO_REJECTIONS: readonly Rejection[] = Object.freeze([]);
const MAX_ARRAY = 1000;
const MAX_EXTRA = 16;
const MAX_LABEL_BYTES = 32;
const MAX_EXTRA_STRING_BYTES = 1024;
const RESERVED_KEYS = new Set(['value', 'unit', 'status', 'timestamp']);
// Names that would collide with our tags or InfluxDB's own columns.
const FORBIDDEN_EXTRA = new Set(['time', 'building_id', 'floor', 'room', 'sensor_type']);
const NUMBER_TEXT = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const NON_FINITE_TEXT = /^[+-]?(nan|inf|infinity)$/i;

/**
 * Sensors publish to the same few topics over and over: their parse (and the
 * canonical building key) is memoised. Bounded: a flood of unique topics only
 * empties the cache now and then.
 */
const TOPIC_CACHE_MAX = 100_000;
type CachedTopic = TopicResult & {
  building?: string;
  lpKeys?: LpKeys;
  /** the fast path's slot (in INTERNED) of the last unit and status on this topic: a number, not a string */
  unitSlot?: number;
  statusSlot?: number;
};
const topicCache = new Map<string, CachedTopic>();

function cachedTopic(topic: string): CachedTopic {
  let r = topicCache.get(topic);
  if (r === undefined) {
    r = parseSensorTopic(topic);
    // every field set here, so all entries share one hidden class (the fast path reads them per reading)
    if (r.ok)
      r = {
        ok: true,
        topic: r.topic,
        building: canonicalBuildingKey(r.topic.buildingId),
        lpKeys: {},
        unitSlot: -1,
        statusSlot: -1,
      };
    if (topicCache.size >= TOPIC_CACHE_MAX) topicCache.clear();
    topicCache.set(topic, r);
  }
  return r;
}

class Reject extends Error {
  constructor(
    readonly reason: RejectReason,
    readonly detail: string,
  ) {
    super(detail);
  }
}

function one(reason: RejectReason, detail: string, payload: Buffer): ParseResult {
  return { readings: [], rejections: [{ reason, detail, payload }] };
}

/** How many payloads took each path (tests and benches look; two increments cost nothing). */
export const parsePaths = { fast: 0, slow: 0 };

export function parseMessage(
  topic: string,
  payload: Buffer,
  receivedAtMs: number,
  limits: ParseLimits,
): ParseResult {
  return parseWith(true, topic, payload, receivedAtMs, limits);
}

/** parseMessage without the fast path: the reference the differential test compares it with. */
export function parseMessageSlow(
  topic: string,
  payload: Buffer,
  receivedAtMs: number,
  limits: ParseLimits,
): ParseResult {
  return parseWith(false, topic, payload, receivedAtMs, limits);
}

function parseWith(
  fast: boolean,
  topic: string,
  payload: Buffer,
  receivedAtMs: number,
  limits: ParseLimits,
): ParseResult {
  if (payload.length > limits.maxPayloadBytes) {
    return one(
      'payload_too_large',
      `payload is ${payload.length} bytes, limit ${limits.maxPayloadBytes}`,
      payload,
    );
  }
  const t = cachedTopic(topic);
  if (!t.ok) return one('bad_topic', t.detail, payload);
  if (fast) {
    const r = fastParse(t, payload, receivedAtMs, limits);
    if (r !== undefined) {
      parsePaths.fast++;
      return r;
    }
    parsePaths.slow++;
  }
  return slowParse(t, payload, receivedAtMs, limits);
}

function slowParse(
  t: CachedTopic & { ok: true },
  payload: Buffer,
  receivedAtMs: number,
  limits: ParseLimits,
): ParseResult {
  if (!isUtf8(payload)) return one('bad_json', 'payload is not valid UTF-8', payload);
  const trimmed = payload.toString('utf8').trim();
  if (trimmed === '') return one('bad_json', 'payload is empty', payload);

  const ctx: Ctx = { topic: t.topic, building: t.building!, lpKeys: t.lpKeys!, receivedAtMs, limits };

  if (NUMBER_TEXT.test(trimmed)) {
    const value = Number(trimmed);
    if (!Number.isFinite(value)) return one('bad_value', 'value is not a finite number', payload);
    return { readings: [reading(ctx, value, {})], rejections: NO_REJECTIONS, text: trimmed };
  }
  if (NON_FINITE_TEXT.test(trimmed)) return one('bad_value', 'value is not a finite number', payload);

  let doc: unknown;
  try {
    doc = JSON.parse(trimmed);
  } catch (err) {
    return one('bad_json', `not JSON: ${(err as Error).message.slice(0, 200)}`, payload);
  }
  if (Array.isArray(doc)) {
    if (doc.length === 0) return one('bad_value', 'array holds no readings', payload);
    if (doc.length > MAX_ARRAY)
      return one('bad_value', `array holds ${doc.length} readings, limit ${MAX_ARRAY}`, payload);
    const out = { readings: [] as Reading[], rejections: [] as Rejection[], text: trimmed };
    doc.forEach((el, i) => {
      try {
        out.readings.push(fromObject(ctx, el));
      } catch (err) {
        if (!(err instanceof Reject)) throw err;
        out.rejections.push({
          reason: err.reason,
          detail: `element ${i}: ${err.detail}`,
          payload: Buffer.from(JSON.stringify(el) ?? 'null'),
        });
      }
    });
    return out;
  }
  try {
    return { readings: [fromObject(ctx, doc)], rejections: NO_REJECTIONS, text: trimmed };
  } catch (err) {
    if (!(err instanceof Reject)) throw err;
    return one(err.reason, err.detail, payload);
  }
}

interface Ctx {
  readonly topic: SensorTopic;
  readonly building: string;
  readonly lpKeys: LpKeys;
  readonly receivedAtMs: number;
  readonly limits: ParseLimits;
}

function label(name: string, raw: unknown): string | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (typeof raw !== 'string') throw new Reject('bad_value', `${name} must be a string`);
  // at most 3 UTF-8 bytes per UTF-16 unit: short labels (most units) need no count
  if (raw.length * 3 > MAX_LABEL_BYTES && Buffer.byteLength(raw, 'utf8') > MAX_LABEL_BYTES)
    throw new Reject('bad_value', `${name} is longer than ${MAX_LABEL_BYTES} bytes`);
  return raw;
}

function toValue(raw: unknown): number {
  if (typeof raw === 'number' && Number.isFinite(raw)) return raw;
  if (typeof raw === 'string' && NUMBER_TEXT.test(raw.trim())) {
    const n = Number(raw.trim());
    if (Number.isFinite(n)) return n;
  }
  if (raw === undefined) throw new Reject('bad_value', 'value is missing');
  throw new Reject('bad_value', 'value must be a finite number or a string holding one');
}

function fromObject(ctx: Ctx, doc: unknown): Reading {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    if (typeof doc === 'number' && Number.isFinite(doc)) return reading(ctx, doc, {});
    throw new Reject('bad_value', 'a reading must be a JSON object, a number, or an array of objects');
  }
  const obj = doc as Record<string, unknown>;
  const value = toValue(obj.value);
  const extra: [string, ExtraValue][] = [];
  // for-in, not Object.keys: no key array per reading (JSON.parse objects have no inherited enumerables)
  for (const key in obj) {
    if (RESERVED_KEYS.has(key)) continue;
    const v = obj[key];
    const problem = extraKeyProblem(key);
    if (problem) throw new Reject('bad_value', problem);
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) throw new Reject('bad_value', `field "${key}" is not finite`);
    } else if (typeof v === 'string') {
      if (Buffer.byteLength(v, 'utf8') > MAX_EXTRA_STRING_BYTES) {
        throw new Reject('bad_value', `field "${key}" is longer than ${MAX_EXTRA_STRING_BYTES} bytes`);
      }
      if (!v.isWellFormed()) throw new Reject('bad_value', `field "${key}" is not valid UTF-8`);
    } else if (typeof v !== 'boolean') {
      throw new Reject('bad_value', `field "${key}" must be a number, string or boolean`);
    }
    extra.push([key, v as ExtraValue]);
    if (extra.length > MAX_EXTRA) throw new Reject('bad_value', `more than ${MAX_EXTRA} extra fields`);
  }
  return reading(ctx, value, {
    unit: label('unit', obj.unit),
    status: label('status', obj.status),
    timestamp: obj.timestamp,
    extra,
  });
}

/** A Date holds ±8.64e15 ms: toISOString throws (RangeError) beyond, so the number is shown instead. */
function when(ms: number): string {
  return Math.abs(ms) <= 8.64e15 ? new Date(ms).toISOString() : `${ms} ms`;
}

export function extraKeyProblem(key: string): string | undefined {
  const p = segmentProblem(`field name "${key.slice(0, 40)}"`, key);
  if (p) return p;
  if (FORBIDDEN_EXTRA.has(key)) return `field name "${key}" is reserved`;
  // InfluxDB 2.x reserves names starting with "_"; a backslash has no portable escape.
  if (key.startsWith('_')) return `field name "${key.slice(0, 40)}" must not start with "_"`;
  if (key.includes('\\')) return `field name "${key.slice(0, 40)}" must not contain a backslash`;
  // A quote in a field key is legal line protocol, but VictoriaMetrics then reads the rest of the
  // line as one quoted string: the fields after it and the timestamp were lost without an error.
  if (key.includes('"')) return `field name "${key.slice(0, 40)}" must not contain a double quote`;
  return undefined;
}

function reading(
  ctx: Ctx,
  value: number,
  o: { unit?: string; status?: string; timestamp?: unknown; extra?: [string, ExtraValue][] },
): Reading {
  let timestampMs = ctx.receivedAtMs;
  if (o.timestamp !== undefined && o.timestamp !== null) {
    const ts = parseTimestamp(o.timestamp);
    if (!ts.ok) throw new Reject('bad_timestamp', ts.detail);
    timestampMs = ts.ms;
    if (timestampMs > ctx.receivedAtMs + ctx.limits.maxFutureSkewS * 1000) {
      throw new Reject('timestamp_out_of_range', `timestamp ${when(timestampMs)} is in the future`);
    }
    if (timestampMs < ctx.receivedAtMs - ctx.limits.maxAgeS * 1000) {
      throw new Reject(
        'timestamp_out_of_range',
        `timestamp ${when(timestampMs)} is older than ${ctx.limits.maxAgeS} s`,
      );
    }
  }
  const t = ctx.topic;
  return {
    buildingId: t.buildingId,
    building: ctx.building,
    floor: t.floor,
    room: t.room,
    sensorType: t.sensorType,
    value,
    unit: o.unit ?? defaultUnit(t.sensorType),
    status: o.status ?? 'normal',
    extra: o.extra ?? NO_EXTRA,
    timestampMs,
    lpKeys: ctx.lpKeys,
    valueAt: -1,
    valueEnd: -1,
  };
}

// ---------------------------------------------------------------------------
// Fast path (issue 15). At 20,000 readings/s the profile showed parseMessage
// at ~2 µs of self time per reading (payload.toString, JSON.parse, the regex
// tests, the parsed object, ctx and options objects) plus 0.23 µs of isUtf8,
// and the garbage it made fed the biggest single cost, GC (~4.8 µs per
// reading). Sensors send the same few shapes, so the common one — a bare JSON
// number, or one flat object of numbers, booleans, null and strings without
// escapes, all printable ASCII — is read straight from the bytes: no payload
// string, no parsed object, unit/status/extra key strings reused from a small
// pool when their bytes match. Anything else, and anything the
// slow path would refuse, returns undefined and takes the slow path, so both
// give the same result (tests/unit/parseFast.test.ts compares them); the fast
// path sets no `text`. bench/parseMicro.ts, {"value","unit","timestamp"}:
// 1.19 µs and 700 bytes per call before, 0.20 µs and ~270 bytes after (the
// Reading, its two boxed doubles, the readings list, the result); 2.1 → 0.57 µs
// with an ISO timestamp and three extra fields.

const POW10 = [
  1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
  1e20, 1e21, 1e22,
];
// Scratch for the scanners (parseMessage is synchronous): the number just read. A typed array,
// not a module `let`: a double stored in a module variable is a new heap number each time.
const SCANNED = new Float64Array(1);

const K_VALUE = 1;
const K_UNIT = 2;
const K_STATUS = 4;
const K_TIMESTAMP = 8;

function isWs(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function skipWs(b: Buffer, i: number, end: number): number {
  while (i < end && isWs(b[i]!)) i++;
  return i;
}

/**
 * A JSON-grammar number at b[i]: its end, its value in SCANNED[0]; -1 when the
 * text is not one. Up to 15 digits and a power of ten up to 22 the value is one
 * correctly rounded IEEE operation on exact operands (Clinger's fast path), the
 * same double as Number()/JSON.parse; beyond that Number() on the text.
 */
/**
 * Whether the number scanNumber last read is written exactly as String(its
 * value) writes it: then the line protocol takes its bytes from the payload
 * instead of formatting the double again (lineProtocol.writeLine). True for
 * plain decimals of at most 15 digits (each such decimal is its own double's
 * shortest form) without an exponent, a trailing fraction zero, "-0", or more
 * than five zeros after "0." (String writes 1e-7 for 0.0000001).
 */
let scannedIsText = false;

function scanNumber(b: Buffer, i: number, end: number): number {
  const start = i;
  scannedIsText = false;
  const neg = b[i] === 0x2d;
  if (neg) i++;
  if (i >= end) return -1;
  const c = b[i]!;
  let m = 0;
  let digits = 0;
  let canonical = true;
  if (c === 0x30) {
    i++;
    digits = 1;
  } else if (c >= 0x31 && c <= 0x39) {
    for (; i < end; i++) {
      const d = b[i]! - 0x30;
      if (d < 0 || d > 9) break;
      m = m * 10 + d;
      digits++;
    }
  } else return -1;
  let e = 0;
  if (i < end && b[i] === 0x2e) {
    i++;
    const from = i;
    for (; i < end; i++) {
      const d = b[i]! - 0x30;
      if (d < 0 || d > 9) break;
      m = m * 10 + d;
      digits++;
    }
    if (i === from) return -1;
    e = from - i;
    if (b[i - 1] === 0x30) canonical = false;
    if (c === 0x30) {
      // "0." then more than five zeros: String() writes an exponent (1e-7)
      let z = from;
      while (z < i && b[z] === 0x30) z++;
      if (z - from > 5) canonical = false;
    }
  }
  if (neg && m === 0) canonical = false;
  if (i < end && (b[i] === 0x65 || b[i] === 0x45)) {
    canonical = false;
    i++;
    let eneg = false;
    if (i < end && (b[i] === 0x2b || b[i] === 0x2d)) {
      eneg = b[i] === 0x2d;
      i++;
    }
    const from = i;
    let x = 0;
    for (; i < end; i++) {
      const d = b[i]! - 0x30;
      if (d < 0 || d > 9) break;
      if (x < 1e6) x = x * 10 + d;
    }
    if (i === from) return -1;
    e += eneg ? -x : x;
  }
  if (digits <= 15 && e >= -22 && e <= 22) {
    const v = e < 0 ? m / POW10[-e]! : m * POW10[e]!;
    SCANNED[0] = neg ? -v : v;
    scannedIsText = canonical;
  } else {
    SCANNED[0] = Number(b.toString('latin1', start, i));
  }
  return i;
}

/** The closing quote of a JSON string opening at b[i], or -1 unless it is printable ASCII without escapes. */
function scanString(b: Buffer, i: number, end: number): number {
  for (i++; i < end; i++) {
    const c = b[i]!;
    if (c === 0x22) return i;
    if (c < 0x20 || c > 0x7e || c === 0x5c) return -1;
  }
  return -1;
}

function sameAscii(b: Buffer, from: number, to: number, s: string | undefined): s is string {
  if (s === undefined || s.length !== to - from) return false;
  for (let i = 0; i < s.length; i++) if (b[from + i] !== s.charCodeAt(i)) return false;
  return true;
}

/**
 * Units, statuses and field names repeat, on a topic and across the fleet: a
 * pool of the last INTERN_MAX distinct ones (at most 64 bytes each, replaced
 * round robin) lets a payload reuse their strings instead of decoding its
 * bytes. A topic remembers only the slot of its unit and status (a number), so
 * a flood of topics or names holds no more than the pool.
 */
const INTERNED: string[] = [];
const INTERN_MAX = 64;
let internNext = 0;
/** where the next field name probably is: names come in the same order payload after payload */
let keyHint = 0;

function internSlot(b: Buffer, from: number, to: number, hint: number): number {
  const n = INTERNED.length;
  if (hint >= 0 && hint < n && sameAscii(b, from, to, INTERNED[hint])) return hint;
  for (let k = 0; k < n; k++) if (sameAscii(b, from, to, INTERNED[k])) return k;
  const s = b.toString('latin1', from, to);
  if (n < INTERN_MAX) {
    INTERNED.push(s);
    return n;
  }
  const slot = internNext;
  INTERNED[slot] = s;
  internNext = (internNext + 1) % INTERN_MAX;
  return slot;
}

/** The extra fields while a payload is read (copied out at the end, at their exact count). */
const EXTRA_SCRATCH: [string, ExtraValue][] = [];

function digits2(b: Buffer, i: number): number {
  const h = b[i]! - 0x30;
  const l = b[i + 1]! - 0x30;
  return h >= 0 && h <= 9 && l >= 0 && l <= 9 ? h * 10 + l : Number.NaN;
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/**
 * The ms of "YYYY-MM-DDTHH:MM:SSZ" or "YYYY-MM-DDTHH:MM:SS.sssZ" (what
 * toISOString writes), a real date from 1970 on; NaN for anything else, which
 * parseTimestamp then reads (V8's Date.parse rolls "02-30" over, takes hour 24).
 */
function isoUtcMs(b: Buffer, from: number, to: number): number {
  const len = to - from;
  if (len !== 20 && len !== 24) return Number.NaN;
  if (
    b[from + 4] !== 0x2d ||
    b[from + 7] !== 0x2d ||
    b[from + 10] !== 0x54 ||
    b[from + 13] !== 0x3a ||
    b[from + 16] !== 0x3a ||
    b[to - 1] !== 0x5a
  )
    return Number.NaN;
  const y = digits2(b, from) * 100 + digits2(b, from + 2);
  const mo = digits2(b, from + 5);
  const d = digits2(b, from + 8);
  const h = digits2(b, from + 11);
  const mi = digits2(b, from + 14);
  const sec = digits2(b, from + 17);
  let frac = 0;
  if (len === 24) {
    if (b[from + 19] !== 0x2e) return Number.NaN;
    const last = b[from + 22]! - 0x30;
    frac = last >= 0 && last <= 9 ? digits2(b, from + 20) * 10 + last : Number.NaN;
  }
  // NaN (a non-digit) fails every comparison below
  if (!(y >= 1970 && mo >= 1 && mo <= 12 && d >= 1 && h <= 23 && mi <= 59 && sec <= 59 && frac >= 0))
    return Number.NaN;
  const leap = y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);
  if (!(d <= DAYS_IN_MONTH[mo - 1]! || (mo === 2 && d === 29 && leap))) return Number.NaN;
  // days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil)
  const yy = mo <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const doy = Math.floor((153 * (mo > 2 ? mo - 3 : mo + 9) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  const days = era * 146097 + doe - 719468;
  return days * 86_400_000 + h * 3_600_000 + mi * 60_000 + sec * 1000 + frac;
}

function isWord(b: Buffer, i: number, end: number, word: string): boolean {
  if (end - i < word.length) return false;
  for (let k = 0; k < word.length; k++) if (b[i + k] !== word.charCodeAt(k)) return false;
  return true;
}

function reservedKey(b: Buffer, from: number, to: number): number {
  switch (to - from) {
    case 4:
      return isWord(b, from, to, 'unit') ? K_UNIT : 0;
    case 5:
      return isWord(b, from, to, 'value') ? K_VALUE : 0;
    case 6:
      return isWord(b, from, to, 'status') ? K_STATUS : 0;
    case 9:
      return isWord(b, from, to, 'timestamp') ? K_TIMESTAMP : 0;
    default:
      return 0;
  }
}

function fastReading(
  t: CachedTopic & { ok: true },
  value: number,
  unit: string | undefined,
  status: string | undefined,
  extra: Reading['extra'],
  timestampMs: number,
): Reading {
  // the same shape, in the same order, as reading() builds
  const topic = t.topic;
  return {
    buildingId: topic.buildingId,
    building: t.building!,
    floor: topic.floor,
    room: topic.room,
    sensorType: topic.sensorType,
    value,
    unit: unit ?? defaultUnit(topic.sensorType),
    status: status ?? 'normal',
    extra,
    timestampMs,
    lpKeys: t.lpKeys!,
    valueAt: -1,
    valueEnd: -1,
  };
}

/** The value's text is payload bytes [at, end) (see scannedIsText). */
function setValueText(r: Reading, at: number, end: number): void {
  const w = r as { valueAt: number; valueEnd: number };
  w.valueAt = at;
  w.valueEnd = end;
}

// Token kinds of a member's value.
const TK_STRING = 0;
const TK_NUMBER = 1;
const TK_TRUE = 2;
const TK_FALSE = 3;
const TK_NULL = 4;

function fastParse(
  t: CachedTopic & { ok: true },
  b: Buffer,
  receivedAtMs: number,
  limits: ParseLimits,
): ParseResult | undefined {
  const end = b.length;
  let i = skipWs(b, 0, end);
  if (i >= end) return undefined;
  let c = b[i]!;
  if (c !== 0x7b) {
    if (c !== 0x2d && (c < 0x30 || c > 0x39)) return undefined;
    const at = i;
    i = scanNumber(b, i, end);
    if (i < 0 || skipWs(b, i, end) !== end || !Number.isFinite(SCANNED[0]!)) return undefined;
    const r = fastReading(t, SCANNED[0]!, undefined, undefined, NO_EXTRA, receivedAtMs);
    if (scannedIsText) setValueText(r, at, i);
    return { readings: [r], rejections: NO_REJECTIONS };
  }
  let seen = 0;
  let value = 0;
  let valueAt = -1;
  let valueEnd = -1;
  let unit: string | undefined;
  let status: string | undefined;
  let timestampMs = receivedAtMs;
  let nExtra = 0;
  i = skipWs(b, i + 1, end);
  for (;;) {
    // "key"
    if (i >= end || b[i] !== 0x22) return undefined;
    const ks = i + 1;
    const ke = scanString(b, i, end);
    if (ke < 0) return undefined;
    i = skipWs(b, ke + 1, end);
    if (i >= end || b[i] !== 0x3a) return undefined;
    i = skipWs(b, i + 1, end);
    if (i >= end) return undefined;
    // its value: one token
    c = b[i]!;
    let kind: number;
    const vs = i + 1;
    let ve = 0;
    if (c === 0x22) {
      kind = TK_STRING;
      ve = scanString(b, i, end);
      if (ve < 0) return undefined;
      i = ve + 1;
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      kind = TK_NUMBER;
      i = scanNumber(b, i, end);
      if (i < 0 || !Number.isFinite(SCANNED[0]!)) return undefined;
    } else if (isWord(b, i, end, 'true')) {
      kind = TK_TRUE;
      i += 4;
    } else if (isWord(b, i, end, 'false')) {
      kind = TK_FALSE;
      i += 5;
    } else if (isWord(b, i, end, 'null')) {
      kind = TK_NULL;
      i += 4;
    } else return undefined;

    const reserved = reservedKey(b, ks, ke);
    if (reserved !== 0) {
      if (seen & reserved) return undefined; // duplicate key: JSON.parse keeps the last one
      seen |= reserved;
      if (reserved === K_VALUE) {
        if (kind !== TK_NUMBER) return undefined;
        value = SCANNED[0]!;
        if (scannedIsText) {
          valueAt = vs - 1;
          valueEnd = i;
        }
      } else if (reserved === K_TIMESTAMP) {
        if (kind === TK_NUMBER) {
          timestampMs = epochNumberMs(SCANNED[0]!);
          if (Number.isNaN(timestampMs)) return undefined;
        } else if (kind === TK_STRING) {
          timestampMs = isoUtcMs(b, vs, ve);
          if (Number.isNaN(timestampMs)) {
            const ts = parseTimestamp(b.toString('latin1', vs, ve));
            if (!ts.ok) return undefined;
            timestampMs = ts.ms;
          }
        } else if (kind !== TK_NULL) return undefined;
        if (
          kind !== TK_NULL &&
          (timestampMs > receivedAtMs + limits.maxFutureSkewS * 1000 ||
            timestampMs < receivedAtMs - limits.maxAgeS * 1000)
        )
          return undefined;
      } else if (kind === TK_STRING) {
        if (ve - vs > MAX_LABEL_BYTES) return undefined;
        if (reserved === K_UNIT) {
          t.unitSlot = internSlot(b, vs, ve, t.unitSlot!);
          unit = INTERNED[t.unitSlot]!;
        } else {
          t.statusSlot = internSlot(b, vs, ve, t.statusSlot!);
          status = INTERNED[t.statusSlot]!;
        }
      } else if (kind !== TK_NULL) return undefined;
    } else {
      // an extra field: anything extraKeyProblem or fromObject could refuse goes the slow way,
      // and so do keys starting with a digit (for-in lists array-index keys first)
      const first = b[ks]!;
      if (ke === ks || ke - ks > 64 || first === 0x5f || (first >= 0x30 && first <= 0x39)) return undefined;
      if (kind === TK_NULL) return undefined;
      if (kind === TK_STRING && ve - vs > MAX_EXTRA_STRING_BYTES) return undefined;
      if (nExtra >= MAX_EXTRA) return undefined;
      const slot = internSlot(b, ks, ke, keyHint);
      keyHint = slot + 1;
      const key = INTERNED[slot]!;
      if (FORBIDDEN_EXTRA.has(key)) return undefined;
      for (let k = 0; k < nExtra; k++) if (EXTRA_SCRATCH[k]![0] === key) return undefined; // duplicate
      EXTRA_SCRATCH[nExtra++] = [
        key,
        kind === TK_NUMBER
          ? SCANNED[0]!
          : kind === TK_STRING
            ? b.toString('latin1', vs, ve)
            : kind === TK_TRUE,
      ];
    }

    i = skipWs(b, i, end);
    if (i >= end) return undefined;
    c = b[i]!;
    if (c === 0x2c) {
      i = skipWs(b, i + 1, end);
      continue;
    }
    if (c !== 0x7d || skipWs(b, i + 1, end) !== end) return undefined;
    break;
  }
  if ((seen & K_VALUE) === 0) return undefined;
  const r = fastReading(
    t,
    value,
    unit,
    status,
    nExtra ? EXTRA_SCRATCH.slice(0, nExtra) : NO_EXTRA,
    timestampMs,
  );
  if (valueAt >= 0) setValueText(r, valueAt, valueEnd);
  return { readings: [r], rejections: NO_REJECTIONS };
}
