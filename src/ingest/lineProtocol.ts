import type { Reading } from './reading.js';

// InfluxDB line protocol for one Reading. Escaping differs between servers, so
// it is a parameter (both behaviours verified against the real servers in
// tests/integration/line-protocol.test.ts):
// - 'escape'  (InfluxDB 2.x, 1.8+ docs, VictoriaMetrics): "\\" in a tag is one backslash.
// - 'literal' (InfluxDB 1.x up to 1.7): a backslash is kept as is and only
//   "\," "\ " "\=" are escapes; a tag value ending in a backslash cannot be
//   written at all, so such a line is refused here and dead-lettered.
export type BackslashMode = 'escape' | 'literal';

export const MEASUREMENT = 'sensor_readings';

export class UnencodableError extends Error {
  readonly code = 'EI_UNENCODABLE';
}

const TAG_SPECIAL = /[,= \\]/g;
const TAG_SPECIAL_NO_BACKSLASH = /[,= ]/g;
const STRING_SPECIAL = /["\\]/g;

export function escapeTag(value: string, mode: BackslashMode): string {
  if (mode === 'escape') return value.replace(TAG_SPECIAL, '\\$&');
  if (value.endsWith('\\')) {
    throw new UnencodableError(
      `"${value.slice(0, 64)}" ends with a backslash, which InfluxDB 1.x line protocol cannot represent in a tag`,
    );
  }
  return value.replace(TAG_SPECIAL_NO_BACKSLASH, '\\$&');
}

export function quoteString(value: string): string {
  return `"${value.replace(STRING_SPECIAL, '\\$&')}"`;
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

export function encodeReading(r: Reading, mode: BackslashMode): string {
  let fieldsText = `value=${formatNumber(r.value)},unit=${quoteString(r.unit)},status=${quoteString(r.status)}`;
  for (const [k, v] of r.extra) {
    const key = escapeTag(k, mode);
    const text =
      typeof v === 'number' ? formatNumber(v) : typeof v === 'boolean' ? String(v) : quoteString(v);
    fieldsText += `,${key}=${text}`;
  }
  return `${seriesKey(r, mode)} ${fieldsText} ${r.timestampMs}`;
}
