import type { Reading } from './reading.js';

// InfluxDB line protocol for one Reading. Escaping differs between servers, so
// it is a parameter (both behaviours verified against the real servers in
// tests/integration/line-protocol.test.ts):
// - 'escape'  (InfluxDB 2.x, 1.8+ docs, VictoriaMetrics): "\\" in a tag is one backslash.
// - 'literal' (InfluxDB 1.x up to 1.7): a backslash is kept as is and only
//   "\," "\ " "\=" are escapes; a tag value ending in a backslash cannot be
//   written at all, so such a line is refused here and dead-lettered.
export type BackslashMode = 'escape' | 'literal';

// Line breaks in string fields (issue 12 item 1: a note holding "\n" plus a
// whole forged line was stored as a second point by VictoriaMetrics). The line
// protocol has no escape for them: InfluxDB 1.x and 2.x read a raw newline
// inside a quoted string as part of the string (their parser tracks quotes)
// and read "\n" as a backslash and an "n". So, per sink:
// - 'raw'    (a server that said it is InfluxDB): kept inside the quotes, the
//   only encoding that reads back exactly (contract section 5);
// - 'escape' (VictoriaMetrics, unknown servers, the .lp file): LF and CR are
//   written as the two characters "\n" and "\r", so no physical line of ours
//   ever holds a line break inside a string. VictoriaMetrics keeps no string
//   fields anyway (it stores a number parsed from the text, usually 0).
// Tags and field keys never hold one: control characters are refused at parse.
export type NewlineMode = 'raw' | 'escape';

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

export function encodeReading(r: Reading, mode: BackslashMode, newlines: NewlineMode = 'escape'): string {
  let fieldsText =
    `value=${formatNumber(r.value)},unit=${quoteString(r.unit, newlines)}` +
    `,status=${quoteString(r.status, newlines)}`;
  for (const [k, v] of r.extra) {
    const key = escapeTag(k, mode);
    const text =
      typeof v === 'number' ? formatNumber(v) : typeof v === 'boolean' ? String(v) : quoteString(v, newlines);
    fieldsText += `,${key}=${text}`;
  }
  return `${cachedSeriesKey(r, mode)} ${fieldsText} ${r.timestampMs}`;
}
