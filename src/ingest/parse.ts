import { isUtf8 } from 'node:buffer';
import { canonicalBuildingKey } from './building.js';
import type { ExtraValue, LpKeys, Reading, Rejection, RejectReason } from './reading.js';
import { parseTimestamp } from './timestamp.js';
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
type CachedTopic = TopicResult & { building?: string; lpKeys?: LpKeys };
const topicCache = new Map<string, CachedTopic>();

function cachedTopic(topic: string): CachedTopic {
  let r = topicCache.get(topic);
  if (r === undefined) {
    r = parseSensorTopic(topic);
    if (r.ok) r = { ...r, building: canonicalBuildingKey(r.topic.buildingId), lpKeys: {} };
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

export function parseMessage(
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
      throw new Reject(
        'timestamp_out_of_range',
        `timestamp ${new Date(timestampMs).toISOString()} is in the future`,
      );
    }
    if (timestampMs < ctx.receivedAtMs - ctx.limits.maxAgeS * 1000) {
      throw new Reject(
        'timestamp_out_of_range',
        `timestamp ${new Date(timestampMs).toISOString()} is older than ${ctx.limits.maxAgeS} s`,
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
  };
}
