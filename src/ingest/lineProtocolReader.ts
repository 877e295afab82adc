import type { BackslashMode } from './lineProtocol.js';

// Reads a line back the way each server parses it (the rules were measured
// against InfluxDB 1.6 and VictoriaMetrics, see
// tests/integration/line-protocol.test.ts). Property tests use it to check that
// what we write reads back as what we received; the roll-ups use it to rebuild
// readings from durable-log records on replay.

export interface ParsedLine {
  measurement: string;
  tags: Record<string, string>;
  fields: Record<string, string | number | boolean>;
  timestamp: number;
}

const SPECIAL = new Set([',', ' ', '=']);

function readToken(line: string, pos: number, stops: string, mode: BackslashMode): [string, number] {
  let out = '';
  let i = pos;
  while (i < line.length) {
    const c = line[i]!;
    if (c === '\\' && i + 1 < line.length) {
      const n = line[i + 1]!;
      if (SPECIAL.has(n) || (mode === 'escape' && n === '\\')) {
        out += n;
        i += 2;
        continue;
      }
    }
    if (stops.includes(c)) break;
    out += c;
    i++;
  }
  return [out, i];
}

export function readLine(line: string, mode: BackslashMode): ParsedLine {
  let [measurement, i] = readToken(line, 0, ', ', mode);
  // prototype-free: keys come from the payload (a field named "constructor" is a field)
  const tags: Record<string, string> = Object.create(null);
  while (line[i] === ',') {
    const [k, j] = readToken(line, i + 1, '=', mode);
    const [v, l] = readToken(line, j + 1, ', ', mode);
    tags[k] = v;
    i = l;
  }
  if (line[i] !== ' ') throw new Error(`expected space at ${i}`);
  i++;
  const fields: Record<string, string | number | boolean> = Object.create(null);
  for (;;) {
    const [k, j] = readToken(line, i, '=', mode);
    i = j + 1;
    if (line[i] === '"') {
      let s = '';
      i++;
      while (line[i] !== '"') {
        if (i >= line.length) throw new Error('unterminated string');
        if (line[i] === '\\' && (line[i + 1] === '"' || line[i + 1] === '\\')) {
          s += line[i + 1];
          i += 2;
        } else s += line[i++];
      }
      i++;
      fields[k] = s;
    } else {
      let raw = '';
      while (i < line.length && line[i] !== ',' && line[i] !== ' ') raw += line[i++];
      fields[k] = raw === 'true' ? true : raw === 'false' ? false : Number(raw);
    }
    if (line[i] === ',') {
      i++;
      continue;
    }
    break;
  }
  if (line[i] !== ' ') throw new Error(`expected space before timestamp at ${i}`);
  measurement ||= '';
  return { measurement, tags, fields, timestamp: Number(line.slice(i + 1)) };
}
