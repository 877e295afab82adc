import { encodeReading } from '../ingest/lineProtocol.js';
import type { ExtraValue, Reading } from '../ingest/reading.js';

// The readings file of a backup set is line protocol in ONE encoding whatever
// server it came from: the InfluxDB 2.x rules ("\\" is a backslash in tags)
// with line breaks in strings written as "\n"/"\r" (ingest/lineProtocol.ts,
// 'escape' modes), ms precision: one point per physical line, the encoding of
// the file sink. A restore parses each line back into a reading and encodes
// it for the target sink, which is what makes a set portable between
// InfluxDB 1.x (backslashes kept literally) and 2.x.

const TAGS = ['building_id', 'floor', 'room', 'sensor_type'] as const;

export interface Point {
  readonly tags: Readonly<Record<string, string>>;
  /** field name → value, in order */
  readonly fields: ReadonlyArray<readonly [string, ExtraValue]>;
  readonly timestampMs: number;
}

export function pointToReading(p: Point): Reading {
  let value = Number.NaN;
  let unit = '';
  let status = '';
  const extra: Array<[string, ExtraValue]> = [];
  for (const [k, v] of p.fields) {
    if (k === 'value' && typeof v === 'number') value = v;
    else if (k === 'unit' && typeof v === 'string') unit = v;
    else if (k === 'status' && typeof v === 'string') status = v;
    else extra.push([k, v]);
  }
  return {
    buildingId: 0,
    building: p.tags.building_id ?? '',
    floor: p.tags.floor ?? '',
    room: p.tags.room ?? '',
    sensorType: p.tags.sensor_type ?? '',
    value,
    unit,
    status,
    extra,
    timestampMs: p.timestampMs,
  };
}

/** A point read from a server, in the set's encoding. */
export function encodePoint(p: Point): string {
  return encodeReading(pointToReading(p), 'escape', 'escape');
}

/** true when the point has what every stored reading has (contract section 5) */
export function isReadingPoint(p: Point): boolean {
  return (
    TAGS.every((t) => typeof p.tags[t] === 'string') &&
    p.fields.some(([k, v]) => k === 'value' && typeof v === 'number')
  );
}

function readKey(line: string, pos: number, stops: string): [string, number] {
  let out = '';
  let i = pos;
  while (i < line.length) {
    const c = line[i]!;
    if (c === '\\' && i + 1 < line.length && ',= \\'.includes(line[i + 1]!)) {
      out += line[i + 1];
      i += 2;
      continue;
    }
    if (stops.includes(c)) break;
    out += c;
    i++;
  }
  return [out, i];
}

const STRING_UNESCAPE: Readonly<Record<string, string>> = { '"': '"', '\\': '\\', n: '\n', r: '\r' };

/** The inverse of encodePoint; throws on a line it did not write. */
export function parsePoint(line: string): Point {
  let [, i] = readKey(line, 0, ', ');
  const tags: Record<string, string> = Object.create(null);
  while (line[i] === ',') {
    const [k, j] = readKey(line, i + 1, '=');
    const [v, l] = readKey(line, j + 1, ', ');
    tags[k] = v;
    i = l;
  }
  if (line[i] !== ' ') throw new Error(`expected a space at ${i}`);
  i++;
  const fields: Array<[string, ExtraValue]> = [];
  for (;;) {
    const [k, j] = readKey(line, i, '=');
    i = j + 1;
    if (line[i] === '"') {
      let s = '';
      i++;
      while (line[i] !== '"') {
        if (i >= line.length) throw new Error('unterminated string');
        const next = line[i + 1];
        if (line[i] === '\\' && next !== undefined && STRING_UNESCAPE[next] !== undefined) {
          s += STRING_UNESCAPE[next];
          i += 2;
        } else s += line[i++];
      }
      i++;
      fields.push([k, s]);
    } else {
      let raw = '';
      while (i < line.length && line[i] !== ',' && line[i] !== ' ') raw += line[i++];
      fields.push([k, raw === 'true' ? true : raw === 'false' ? false : Number(raw)]);
    }
    if (line[i] === ',') {
      i++;
      continue;
    }
    break;
  }
  if (line[i] !== ' ') throw new Error(`expected a space before the timestamp at ${i}`);
  const ts = Number(line.slice(i + 1));
  if (!Number.isSafeInteger(ts)) throw new Error('bad timestamp');
  return { tags, fields, timestampMs: ts };
}

/** the UTC day of a line's timestamp, for the file sink's per-day files */
export function lineDay(line: string): string {
  const ts = Number(line.slice(line.lastIndexOf(' ') + 1));
  return new Date(ts).toISOString().slice(0, 10);
}
