import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import type { Config } from '../config/types.js';
import { IngestError } from '../errors.js';
import { encodeReading, MEASUREMENT, UnencodableError } from '../ingest/lineProtocol.js';
import type { ExtraValue } from '../ingest/reading.js';
import { redactText } from '../redact.js';
import { createSink, probeInflux } from '../sinks/detect.js';
import { bodyOf, type Sink } from '../sinks/sink.js';
import { LineWriter, readLines } from './files.js';
import {
  encodePoint,
  isReadingPoint,
  lineDay,
  type Point,
  parsePoint,
  pointToReading,
} from './readingsCodec.js';

// sensor_readings in and out of a backup set (see readingsCodec.ts for the
// file's encoding). Read from the server one time window at a time (a month
// of readings is never one query), streamed (v1: chunked JSON; v2: Flux CSV
// rows). Restored through the project's own sink writers, so a set made from
// InfluxDB 1.x loads into 2.x (or VictoriaMetrics' v2 write API) and back.

export const READINGS_FILE = 'influx/sensor_readings.lp.gz';
const WINDOW_MS = 3600_000;
const RESTORE_BATCH = 5000;
const SETTLE_MARGIN_MS = 5000;
const TAGS = new Set(['building_id', 'floor', 'room', 'sensor_type']);

export interface ReadingsPart {
  source: string;
  api?: string;
  server_version?: string;
  /** readings with timestamps before this (the backup's start) were read */
  until_ms: number;
  first_ms: number | null;
  last_ms: number | null;
  points: number;
  file: string;
}

type Progress = (line: string) => void;

export async function dumpReadings(
  cfg: Config,
  dir: string,
  untilMs: number,
  progress: Progress,
): Promise<ReadingsPart> {
  const out = await LineWriter.open(dir, READINGS_FILE);
  const part: ReadingsPart = {
    source: cfg.influx.url ? 'influxdb' : 'file',
    until_ms: untilMs,
    first_ms: null,
    last_ms: null,
    points: 0,
    file: READINGS_FILE,
  };
  const add = async (line: string, ts: number) => {
    await out.write(line);
    part.points++;
    if (part.first_ms === null || ts < part.first_ms) part.first_ms = ts;
    if (part.last_ms === null || ts > part.last_ms) part.last_ms = ts;
  };
  try {
    if (!cfg.influx.url) {
      await dumpFileSink(cfg.dataDir, add, progress);
    } else {
      // Readings received before the cut reach the server within one flush
      // interval of the pipeline plus the write itself: wait that long (and a
      // margin for a busy machine) past the cut before reading its window.
      const settle = untilMs + cfg.pipeline.flushIntervalMs + SETTLE_MARGIN_MS - Date.now();
      if (settle > 0) await new Promise((r) => setTimeout(r, settle));
      const info = await probeInflux(cfg.influx.url, cfg.influx.token, cfg.influx.timeoutMs);
      const api = cfg.influx.api === 'auto' ? info.api : cfg.influx.api;
      part.api = api;
      part.server_version = info.version;
      if (!info.version) {
        throw new IngestError(
          'EI_BACKUP_FAILED',
          'influx: the server did not say it is InfluxDB (no X-Influxdb-Version): readings can be backed up from InfluxDB 1.x or 2.x only',
        );
      }
      const points = api === 'v2' ? dumpV2(cfg, untilMs, progress) : dumpV1(cfg, untilMs, progress);
      for await (const p of points) await add(encodePoint(p), p.timestampMs);
    }
  } finally {
    await out.close();
  }
  progress(`influx: ${part.points} readings`);
  return part;
}

async function dumpFileSink(
  dataDir: string,
  add: (line: string, ts: number) => Promise<void>,
  progress: Progress,
): Promise<void> {
  const dirPath = join(dataDir, 'readings');
  const files = (await readdir(dirPath).catch(() => [] as string[])).filter((f) => f.endsWith('.lp')).sort();
  for (const f of files) {
    // today's file is being appended to: only its complete lines
    const text = await readFile(join(dirPath, f), 'utf8');
    const end = text.lastIndexOf('\n');
    for (const line of text.slice(0, end + 1).split('\n')) {
      if (!line) continue;
      const ts = Number(line.slice(line.lastIndexOf(' ') + 1));
      if (Number.isSafeInteger(ts)) await add(line, ts);
    }
    progress(`influx: file sink ${f} read`);
  }
}

function v1Headers(cfg: Config): Record<string, string> {
  const h: Record<string, string> = {};
  if (cfg.influx.username) {
    h.authorization = `Basic ${Buffer.from(`${cfg.influx.username}:${cfg.influx.password ?? ''}`).toString('base64')}`;
  }
  return h;
}

interface V1Result {
  error?: string;
  series?: Array<{ tags?: Record<string, string>; columns: string[]; values: unknown[][] }>;
}

async function* v1Query(cfg: Config, q: string): AsyncGenerator<V1Result> {
  const base = cfg.influx.url!.replace(/\/+$/, '');
  const params = new URLSearchParams({
    db: cfg.influx.database,
    q,
    epoch: 'ms',
    chunked: 'true',
    chunk_size: '10000',
  });
  let res: Response;
  try {
    res = await fetch(`${base}/query?${params}`, { headers: v1Headers(cfg) });
  } catch (err) {
    throw new IngestError(
      'EI_INFLUX_UNREACHABLE',
      `influx: query failed: ${redactText((err as Error).message)}`,
    );
  }
  if (!res.ok || !res.body) {
    throw new IngestError(
      'EI_BACKUP_FAILED',
      `influx: query answered ${res.status}: ${(await res.text()).slice(0, 300)}`,
    );
  }
  const rl = createInterface({
    input: Readable.fromWeb(res.body as never),
    crlfDelay: Number.POSITIVE_INFINITY,
  });
  for await (const line of rl) {
    if (!line.trim()) continue;
    const body = JSON.parse(line) as { error?: string; results?: V1Result[] };
    if (body.error) throw new IngestError('EI_BACKUP_FAILED', `influx: ${body.error}`);
    for (const r of body.results ?? []) {
      if (r.error) {
        if (/database not found/.test(r.error)) return;
        throw new IngestError('EI_BACKUP_FAILED', `influx: ${r.error}`);
      }
      yield r;
    }
  }
}

async function* dumpV1(cfg: Config, untilMs: number, progress: Progress): AsyncGenerator<Point> {
  let first: number | undefined;
  for await (const r of v1Query(
    cfg,
    `SELECT first("value") FROM "${MEASUREMENT}" WHERE time < ${untilMs}ms`,
  )) {
    const t = r.series?.[0]?.values?.[0]?.[0];
    if (typeof t === 'number') first = t;
  }
  if (first === undefined) return;
  let n = 0;
  for (let a = first - (first % WINDOW_MS); a < untilMs; a += WINDOW_MS) {
    const b = Math.min(a + WINDOW_MS, untilMs);
    // GROUP BY *: tags come apart from fields, even an extra field named like a tag
    const q = `SELECT * FROM "${MEASUREMENT}" WHERE time >= ${a}ms AND time < ${b}ms GROUP BY *`;
    for await (const r of v1Query(cfg, q)) {
      for (const s of r.series ?? []) {
        const tags = s.tags ?? {};
        const timeCol = s.columns.indexOf('time');
        for (const row of s.values) {
          const fields: Array<[string, ExtraValue]> = [];
          s.columns.forEach((c, i) => {
            const v = row[i];
            if (i !== timeCol && v !== null && v !== undefined) fields.push([c, v as ExtraValue]);
          });
          const p: Point = { tags, fields, timestampMs: row[timeCol] as number };
          if (isReadingPoint(p)) {
            n++;
            yield p;
          }
        }
      }
    }
    if ((a / WINDOW_MS) % 24 === 0 || b === untilMs)
      progress(`influx: ${n} readings up to ${new Date(b).toISOString()}`);
  }
}

async function* dumpV2(cfg: Config, untilMs: number, progress: Progress): AsyncGenerator<Point> {
  const { InfluxDB } = await import('@influxdata/influxdb-client');
  const api = new InfluxDB({
    url: cfg.influx.url!,
    token: cfg.influx.token,
    timeout: cfg.influx.timeoutMs,
  }).getQueryApi(cfg.influx.org);
  const bucket = JSON.stringify(cfg.influx.bucket);
  const stop = new Date(untilMs).toISOString();
  let first: number | undefined;
  for await (const { values, tableMeta } of api.iterateRows(
    `from(bucket: ${bucket}) |> range(start: 0, stop: ${stop}) |> filter(fn: (r) => r._measurement == "${MEASUREMENT}" and r._field == "value") |> first() |> group() |> min(column: "_time")`,
  )) {
    first = Date.parse(String(tableMeta.toObject(values)._time));
  }
  if (first === undefined || !Number.isFinite(first)) return;
  let n = 0;
  for (let a = first - (first % WINDOW_MS); a < untilMs; a += WINDOW_MS) {
    const b = Math.min(a + WINDOW_MS, untilMs);
    const q =
      `from(bucket: ${bucket}) |> range(start: ${new Date(a).toISOString()}, stop: ${new Date(b).toISOString()})` +
      ` |> filter(fn: (r) => r._measurement == "${MEASUREMENT}")` +
      ' |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")';
    for await (const { values, tableMeta } of api.iterateRows(q)) {
      const o = tableMeta.toObject(values);
      const tags: Record<string, string> = {};
      const fields: Array<[string, ExtraValue]> = [];
      for (const [k, v] of Object.entries(o)) {
        if (TAGS.has(k)) tags[k] = String(v);
        else if (k.startsWith('_') || k === 'result' || k === 'table') continue;
        else if (v !== null && v !== undefined && v !== '') fields.push([k, v as ExtraValue]);
      }
      const p: Point = { tags, fields, timestampMs: Date.parse(String(o._time)) };
      if (isReadingPoint(p)) {
        n++;
        yield p;
      }
    }
    if ((a / WINDOW_MS) % 24 === 0 || b === untilMs)
      progress(`influx: ${n} readings up to ${new Date(b).toISOString()}`);
  }
}

/** Write a batch, splitting it on 413 and retrying transient failures a few times. */
async function writeAll(sink: Sink, lines: string[]): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const r = await sink.write(bodyOf(lines), lines.length);
    if (r.kind === 'ok') return;
    if (r.kind === 'too_large' && lines.length > 1) {
      const mid = lines.length >> 1;
      await writeAll(sink, lines.slice(0, mid));
      await writeAll(sink, lines.slice(mid));
      return;
    }
    if (r.kind === 'retry' && attempt < 5) {
      await new Promise((res) => setTimeout(res, r.retryAfterMs ?? 500 * 2 ** attempt));
      continue;
    }
    throw new IngestError(
      'EI_RESTORE_FAILED',
      `influx: the server refused a batch: ${redactText(r.message)}`,
    );
  }
}

export async function restoreReadings(
  cfg: Config,
  dir: string,
  part: ReadingsPart,
  progress: Progress,
): Promise<number> {
  const path = join(dir, part.file);
  if (!cfg.influx.url) return restoreToFileSink(cfg.dataDir, path, progress);
  const sink = await createSink(cfg.influx, cfg.dataDir);
  let n = 0;
  let unencodable = 0;
  try {
    await sink.connect();
    let batch: string[] = [];
    for await (const line of readLines(path)) {
      try {
        batch.push(
          encodeReading(pointToReading(parsePoint(line)), sink.backslashMode, sink.newlines ?? 'escape'),
        );
      } catch (err) {
        // a tag ending in a backslash has no InfluxDB 1.x encoding (ingest/lineProtocol.ts)
        if (!(err instanceof UnencodableError)) throw err;
        unencodable++;
        continue;
      }
      if (batch.length >= RESTORE_BATCH) {
        await writeAll(sink, batch);
        n += batch.length;
        batch = [];
        if (n % (RESTORE_BATCH * 20) === 0) progress(`influx: ${n} readings restored …`);
      }
    }
    if (batch.length) await writeAll(sink, batch);
    n += batch.length;
  } finally {
    await sink.close();
  }
  progress(`influx: ${n} readings restored to ${sink.name}`);
  if (unencodable) {
    throw new IngestError(
      'EI_RESTORE_FAILED',
      `influx: ${unencodable} readings have a tag ending in a backslash, which ${sink.name} cannot store`,
    );
  }
  return n;
}

/**
 * No INFLUX_URL: readings go back into {DATA_DIR}/readings/{day}.lp by their
 * timestamp's day, each line added only when that file lacks it (a second
 * restore adds nothing). The set's lines come in time order, so one day's
 * lines (and that day's file) are in memory at a time; a day seen again later
 * is merged again, still without duplicates.
 */
async function restoreToFileSink(dataDir: string, path: string, progress: Progress): Promise<number> {
  const dirPath = join(dataDir, 'readings');
  await mkdir(dirPath, { recursive: true });
  const days = new Set<string>();
  let n = 0;
  let day = '';
  let lines: string[] = [];
  const flush = async () => {
    if (!lines.length) return;
    const file = join(dirPath, `${day}.lp`);
    const existing = await readFile(file, 'utf8').catch(() => '');
    const have = new Set(existing.split('\n'));
    const missing: string[] = [];
    for (const l of lines) {
      if (have.has(l)) continue;
      have.add(l); // the same reading twice in the set is written once
      missing.push(l);
    }
    lines = [];
    if (!missing.length) return;
    // whole file rewritten then renamed: a crash never leaves half a line
    const tmp = `${file}.restore.tmp`;
    const ws = createWriteStream(tmp);
    if (existing) ws.write(existing.endsWith('\n') ? existing : `${existing}\n`);
    for (const l of missing) if (!ws.write(`${l}\n`)) await once(ws, 'drain');
    ws.end();
    await once(ws, 'close');
    await rename(tmp, file);
  };
  for await (const line of readLines(path)) {
    const d = lineDay(line);
    if (d !== day) {
      await flush();
      day = d;
      days.add(d);
    }
    lines.push(line);
    n++;
  }
  await flush();
  progress(`influx: ${n} readings restored to the file sink (${days.size} day files)`);
  return n;
}
