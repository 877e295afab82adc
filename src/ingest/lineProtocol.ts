import type { BackslashMode, NewlineMode } from '../sinks/sink.js';
import type { Reading } from './reading.js';

// InfluxDB line protocol for one Reading, encoded the way the sink's server
// reads it (BackslashMode and NewlineMode are the sink's: src/sinks/sink.ts).
export type { BackslashMode, NewlineMode };

export const MEASUREMENT = 'sensor_readings';

export class UnencodableError extends Error {
  readonly code = 'EI_UNENCODABLE';
}

const TAG_SPECIAL = /[,= \\]/g;
const TAG_SPECIAL_NO_BACKSLASH = /[,= ]/g;
const STRING_SPECIAL = /["\\]/g;
const STRING_SPECIAL_OR_BREAK = /["\\\n\r]/g;
const NEEDS_STRING_ESCAPE = /["\\\n\r]/;
const STRING_ESCAPES: Readonly<Record<string, string>> = {
  '"': '\\"',
  '\\': '\\\\',
  '\n': '\\n',
  '\r': '\\r',
};

export function escapeTag(value: string, mode: BackslashMode): string {
  if (mode === 'escape') return value.replace(TAG_SPECIAL, '\\$&');
  if (value.endsWith('\\')) {
    throw new UnencodableError(
      `"${value.slice(0, 64)}" ends with a backslash, which InfluxDB 1.x line protocol cannot represent in a tag`,
    );
  }
  return value.replace(TAG_SPECIAL_NO_BACKSLASH, '\\$&');
}

export function quoteString(value: string, newlines: NewlineMode = 'escape'): string {
  if (newlines === 'raw') {
    // fast path: most units and statuses need no escaping
    if (value.indexOf('"') === -1 && value.indexOf('\\') === -1) return `"${value}"`;
    return `"${value.replace(STRING_SPECIAL, '\\$&')}"`;
  }
  if (!NEEDS_STRING_ESCAPE.test(value)) return `"${value}"`;
  return `"${value.replace(STRING_SPECIAL_OR_BREAK, (c) => STRING_ESCAPES[c]!)}"`;
}

/** Floats always (no "i" suffix), so a field never changes type between points. */
function formatNumber(n: number): string {
  return String(n);
}

export function seriesKey(
  r: Pick<Reading, 'building' | 'floor' | 'room' | 'sensorType'>,
  mode: BackslashMode,
): string {
  // Tags in key order (building_id < floor < room < sensor_type): InfluxDB's fast path.
  return (
    `${MEASUREMENT},building_id=${escapeTag(r.building, mode)},floor=${escapeTag(r.floor, mode)}` +
    `,room=${escapeTag(r.room, mode)},sensor_type=${escapeTag(r.sensorType, mode)}`
  );
}

// Series keys repeat for every reading of a sensor: escape each once. Bounded like the topic cache.
const SERIES_CACHE_MAX = 100_000;
const seriesCache = { escape: new Map<string, string>(), literal: new Map<string, string>() };

function cachedSeriesKey(r: Reading, mode: BackslashMode): string {
  const own = r.lpKeys;
  if (own) {
    // the topic's own slot (ingest/parse.ts): no id to build, no map to search
    const known = own[mode];
    if (known !== undefined) return known;
    const key = seriesKey(r, mode); // throws UnencodableError: never kept
    own[mode] = key;
    return key;
  }
  const cache = seriesCache[mode];
  const id = `${r.building}\u0000${r.floor}\u0000${r.room}\u0000${r.sensorType}`;
  let key = cache.get(id);
  if (key === undefined) {
    key = seriesKey(r, mode); // throws UnencodableError: such keys are never cached
    if (cache.size >= SERIES_CACHE_MAX) cache.clear();
    cache.set(id, key);
  }
  return key;
}

/** A topic's unit, quoted once while it stays the same (every reading of a sensor carries it). */
function quotedUnit(r: Reading, newlines: NewlineMode): string {
  const k = r.lpKeys;
  if (k === undefined) return quoteString(r.unit, newlines);
  if (k.unitText === r.unit && k.unitNewlines === newlines) return k.unitQuoted!;
  const quoted = quoteString(r.unit, newlines);
  k.unitText = r.unit;
  k.unitNewlines = newlines;
  k.unitQuoted = quoted;
  return quoted;
}

export function encodeReading(r: Reading, mode: BackslashMode, newlines: NewlineMode = 'escape'): string {
  const status = r.status === 'normal' ? '"normal"' : quoteString(r.status, newlines);
  let fieldsText = `value=${formatNumber(r.value)},unit=${quotedUnit(r, newlines)},status=${status}`;
  for (const [k, v] of r.extra) {
    const key = escapeTag(k, mode);
    const text =
      typeof v === 'number' ? formatNumber(v) : typeof v === 'boolean' ? String(v) : quoteString(v, newlines);
    fieldsText += `,${key}=${text}`;
  }
  return `${cachedSeriesKey(r, mode)} ${fieldsText} ${r.timestampMs}`;
}

/*
 * Writing a line straight into a buffer (the durable log's chunk) instead of
 * building it as a string (issue 15): the string version made a rope of five
 * to eight pieces per reading, flattened it when it was written, and wrote it
 * twice (log record, batch). Here the per-series parts (key, quoted unit, kept
 * on the topic's cache entry, flat) are written as they are, constants are
 * copied, and only the value's text is a fresh (short) string. The bytes are the same as
 * Buffer.from(encodeReading(...)) (tests/unit/lineWriter.test.ts).
 */

const VALUE_EQ = Buffer.from(' value=');
const UNIT_EQ = Buffer.from(',unit=');
const STATUS_NORMAL = Buffer.from(',status="normal"');
const STATUS_EQ = Buffer.from(',status=');

/** Copy src into buf at p: a loop for the short constants, a native copy beyond (a JS loop costs ~2 ns per byte). */
export function copyBytes(buf: Buffer, p: number, src: Buffer): number {
  const n = src.length;
  if (n > 16) return p + src.copy(buf, p);
  for (let i = 0; i < n; i++) buf[p++] = src[i]!;
  return p;
}

/** Write s as UTF-8 at p; the caller has made room for s.length * 3 bytes. */
export function writeText(buf: Buffer, p: number, s: string): number {
  const n = s.length;
  if (n > 16) return p + buf.write(s, p, 'utf8');
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) return p - i + buf.write(s, p - i, 'utf8');
    buf[p++] = c;
  }
  return p;
}

/** A non-negative safe integer's decimal digits (the timestamp) without a string. */
function writeUint(buf: Buffer, p: number, n: number): number {
  if (!(n >= 0 && n <= Number.MAX_SAFE_INTEGER && Math.floor(n) === n)) return writeText(buf, p, String(n));
  let digits = 1;
  for (let x = n; x >= 10; x = Math.floor(x / 10)) digits++;
  let at = p + digits;
  for (let x = n; ; ) {
    const q = Math.floor(x / 10);
    buf[--at] = 48 + (x - q * 10);
    if (q === 0) break;
    x = q;
  }
  return p + digits;
}

/**
 * Reading r as one line of line protocol written into buf at p; returns the
 * end, or -1 when the line does not fit before `limit` (nothing meaningful
 * written: the caller starts again in a larger buffer). Throws
 * UnencodableError like encodeReading.
 */
export function writeLine(
  buf: Buffer,
  p: number,
  limit: number,
  r: Reading,
  mode: BackslashMode,
  newlines: NewlineMode = 'escape',
  /** the message r was parsed from: its value's own text is copied when it is String(value) */
  payload?: Buffer,
): number {
  const key = cachedSeriesKey(r, mode);
  const unit = quotedUnit(r, newlines);
  const at = payload === undefined ? -1 : (r.valueAt ?? -1);
  // String(double) was ~0.5 µs per reading in the profile, and a string to collect
  const value = at >= 0 ? null : formatNumber(r.value);
  const status = r.status === 'normal' ? null : quoteString(r.status, newlines);
  let extra = '';
  // indexed: for-of with destructuring made an iterator per reading, extra fields or not
  for (let i = 0; i < r.extra.length; i++) {
    const [k, v] = r.extra[i]!;
    const text =
      typeof v === 'number' ? formatNumber(v) : typeof v === 'boolean' ? String(v) : quoteString(v, newlines);
    extra += `,${escapeTag(k, mode)}=${text}`;
  }
  // value text, status and extras are ASCII or counted at 3 bytes per unit; 21: " " + the timestamp digits
  const worst =
    key.length * 3 +
    VALUE_EQ.length +
    (value === null ? r.valueEnd! - at : value.length) +
    UNIT_EQ.length +
    unit.length * 3 +
    STATUS_EQ.length +
    (status === null ? STATUS_NORMAL.length : status.length * 3) +
    extra.length * 3 +
    21 +
    24;
  if (p + worst > limit) return -1;
  p += buf.write(key, p, 'utf8');
  p = copyBytes(buf, p, VALUE_EQ);
  if (value === null) for (let i = at, e = r.valueEnd!; i < e; i++) buf[p++] = payload![i]!;
  else p = writeText(buf, p, value);
  p = copyBytes(buf, p, UNIT_EQ);
  p += buf.write(unit, p, 'utf8');
  if (status === null) p = copyBytes(buf, p, STATUS_NORMAL);
  else {
    p = copyBytes(buf, p, STATUS_EQ);
    p = writeText(buf, p, status);
  }
  if (extra !== '') p = writeText(buf, p, extra);
  buf[p++] = 0x20;
  return writeUint(buf, p, r.timestampMs);
}
