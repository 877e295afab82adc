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
