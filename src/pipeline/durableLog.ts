import { existsSync, readdirSync, statSync } from 'node:fs';
import { type FileHandle, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import type { Logger } from 'pino';
import { retryPolicy } from '../retry.js';
import {
  checkOwnFile,
  mkdirPrivate,
  openNoFollow,
  readFileNoFollow,
  writeFileAtomicPrivate,
} from '../safeFs.js';

/*
 * The local durable log (contract section 7): every accepted reading is
 * appended here before its publisher is acknowledged, and stays until the sink
 * has taken it.
 *
 *   {dataDir}/log/00000000000000000000.seg   segment files, named by the global
 *   {dataDir}/log/00000000000067108864.seg   byte offset of their first record
 *   {dataDir}/log/committed.<sink>           offset below which the sink has everything
 *
 * A record is [u32 length][u32 crc32(body)][body, binary: see encodeBody]. Offsets are global byte
 * positions, so they survive restarts and segment deletion. Appends are group
 * committed: records appended while a write+fsync is running share the next
 * one, so the fsync cost is paid per few milliseconds, not per message.
 */

export interface LogRecord {
  readonly topic: string;
  readonly clientId: string | null;
  readonly receivedAtMs: number;
  /** the message as text, for dead-lettering a line the sink refuses */
  readonly payload: string;
  /** encoded line protocol, one per reading: a replay writes the identical points */
  readonly lines: readonly string[];
}

export interface StoredRecord {
  readonly start: number;
  readonly end: number;
  readonly record: LogRecord;
}

export interface Appended {
  readonly start: number;
  readonly end: number;
  /** resolves when the record is on disk (fsync'd, or written for durability: relaxed) */
  readonly durable: Promise<void>;
}

export interface DurableLogOptions {
  readonly dir: string;
  readonly durability: 'fsync' | 'relaxed';
  readonly maxBytes: number;
  readonly segmentBytes?: number;
  readonly log: Logger;
  /**
   * Sinks that may not hold the log past 90% of its budget (the roll-ups):
   * beyond that their segments are freed anyway, so a PostgreSQL outage can
   * never stop ingestion. The InfluxDB sink is never soft.
   */
  readonly softSinks?: readonly string[];
  /**
   * A file error on the hot path (append, fsync, roll, commit file): the log
   * retries it itself and never throws it at the caller; this counts and logs
   * (rate-limited) what happened. Default: a plain warn.
   */
  readonly onIoError?: (op: string, err: unknown) => void;
}

/** Local file retries (EMFILE, ENOSPC, EIO): short, the fd table or the disk usually recovers quickly. */
const DISK_RETRY = retryPolicy('diskIo');

const HEADER = 8;
const SEGMENT_RE = /^(\d{20})\.seg$/;
/** A record larger than this is corrupt by definition (payloads are capped far below). */
const MAX_RECORD = 64 * 1024 * 1024;

const segName = (base: number) => `${String(base).padStart(20, '0')}.seg`;

const CHUNK = 1024 * 1024;

/*
 * Record body, binary (no JSON escaping on the per-message path):
 *   u8 format (1) · f64 receivedAtMs · u32 n+str topic · u32 n+str clientId (n = 0xffffffff: null)
 *   · u32 n+str payload · u32 line count · (u32 n+str line)*      (n: UTF-8 byte length)
 */
const FORMAT = 1;
const NULL_LEN = 0xffffffff;

/** Upper bound of a record's body size, to reserve room before encoding. */
function worstBody(rec: LogRecord): number {
  let chars = rec.topic.length + (rec.clientId?.length ?? 0) + rec.payload.length;
  for (const l of rec.lines) chars += l.length;
  return 1 + 8 + 16 + 4 * rec.lines.length + chars * 3;
}

function putString(buf: Buffer, at: number, s: string): number {
  const n = buf.write(s, at + 4);
  buf.writeUInt32LE(n, at);
  return at + 4 + n;
}

/** Encode into buf at `at`; returns the body's length. */
function encodeBody(buf: Buffer, at: number, rec: LogRecord): number {
  let p = at;
  buf[p++] = FORMAT;
  buf.writeDoubleLE(rec.receivedAtMs, p);
  p = putString(buf, p + 8, rec.topic);
  if (rec.clientId === null) {
    buf.writeUInt32LE(NULL_LEN, p);
    p += 4;
  } else p = putString(buf, p, rec.clientId);
  p = putString(buf, p, rec.payload);
  buf.writeUInt32LE(rec.lines.length, p);
  p += 4;
  for (const line of rec.lines) p = putString(buf, p, line);
  return p - at;
}

/** Throws on a malformed body (callers treat that as corruption). */
export function decodeBody(body: Buffer): LogRecord {
  if (body[0] !== FORMAT) throw new Error(`unknown record format ${body[0]}`);
  let p = 9;
  const str = (): string => {
    const n = body.readUInt32LE(p);
    if (p + 4 + n > body.length) throw new Error('string past the end of the record');
    const s = body.toString('utf8', p + 4, p + 4 + n);
    p += 4 + n;
    return s;
  };
  const receivedAtMs = body.readDoubleLE(1);
  const topic = str();
  let clientId: string | null = null;
  if (body.readUInt32LE(p) === NULL_LEN) p += 4;
  else clientId = str();
  const payload = str();
  const count = body.readUInt32LE(p);
  p += 4;
  const lines: string[] = [];
  for (let i = 0; i < count; i++) lines.push(str());
  if (p !== body.length) throw new Error('trailing bytes in record');
  return { topic, clientId, receivedAtMs, payload, lines };
}

/**
 * A record's body written by its producer straight into the log's chunk (the
 * ingest hot path, issue 15): no LogRecord, no line strings. `encode` writes
 * the whole body at `at` (putHead, then the line count and each line framed by
 * putLine/endLine) and returns its end, or -1 when it did not fit before
 * `limit` (it is called again with more room), or `at` to append nothing.
 */
export interface BodyEncoder {
  /** a good guess at the body's size, to reserve room */
  readonly estimate: number;
  encode(buf: Buffer, at: number, limit: number): number;
}

/** Write s as UTF-8 with its u32 length; room for s.length * 3 + 4 is the caller's. */
function putText(buf: Buffer, at: number, s: string): number {
  const n = s.length;
  // a JS loop for short ids only: ~2 ns per byte against a native write's ~50 ns per call
  if (n > 16) return putString(buf, at, s);
  let p = at + 4;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) return putString(buf, at, s);
    buf[p++] = c;
  }
  buf.writeUInt32LE(n, at);
  return p;
}

/** The fields before the lines; returns where the line count goes, or -1 when they do not fit. */
export function putHead(
  buf: Buffer,
  at: number,
  limit: number,
  receivedAtMs: number,
  topic: string,
  clientId: string | null,
  payload: Uint8Array,
): number {
  if (at + 1 + 8 + 12 + (topic.length + (clientId?.length ?? 0)) * 3 + payload.length + 4 > limit) return -1;
  let p = at;
  buf[p++] = FORMAT;
  buf.writeDoubleLE(receivedAtMs, p);
  p = putText(buf, p + 8, topic);
  if (clientId === null) {
    buf.writeUInt32LE(NULL_LEN, p);
    p += 4;
  } else p = putText(buf, p, clientId);
  // the message's own bytes (valid UTF-8: ingest checked), not a decoded and re-encoded string
  buf.writeUInt32LE(payload.length, p);
  buf.set(payload, p + 4);
  return p + 4 + payload.length;
}

/** Where the next line's bytes go, after room for its length. */
export const LINE_FRAME = 4;

/** Close a line written at [start + LINE_FRAME, end): its length goes in front. */
export function endLine(buf: Buffer, start: number, end: number): number {
  buf.writeUInt32LE(end - start - LINE_FRAME, start);
  return end;
}

export function encodeRecord(rec: LogRecord): Buffer {
  const buf = Buffer.allocUnsafe(HEADER + worstBody(rec));
  const len = encodeBody(buf, HEADER, rec);
  buf.writeUInt32LE(len, 0);
  buf.writeUInt32LE(crc32(buf.subarray(HEADER, HEADER + len)), 4);
  return buf.subarray(0, HEADER + len);
}

/** Valid records at the front of `buf`; `valid` is where the first bad or incomplete record starts. */
export function scanRecords(
  buf: Buffer,
  base: number,
): { records: StoredRecord[]; valid: number; corrupt: boolean } {
  const records: StoredRecord[] = [];
  let pos = 0;
  while (pos + HEADER <= buf.length) {
    const len = buf.readUInt32LE(pos);
    if (len === 0 || len > MAX_RECORD || pos + HEADER + len > buf.length) {
      return { records, valid: pos, corrupt: len === 0 || len > MAX_RECORD };
    }
    const body = buf.subarray(pos + HEADER, pos + HEADER + len);
    if (crc32(body) !== buf.readUInt32LE(pos + 4)) return { records, valid: pos, corrupt: true };
    let record: LogRecord;
    try {
      record = decodeBody(body);
    } catch {
      return { records, valid: pos, corrupt: true };
    }
    records.push({ start: base + pos, end: base + pos + HEADER + len, record });
    pos += HEADER + len;
  }
  return { records, valid: pos, corrupt: false };
}

interface Segment {
  base: number;
  size: number;
}

export class DurableLog {
  private segments: Segment[] = [];
  private fh: FileHandle | null = null;
  /** offset after the last appended record (pending included) */
  private appendEnd = 0;
  /** offset after the last record written to the file (readers stop here) */
  private writtenEnd = 0;
  /** sealed regions waiting for the next write */
  private pending: Buffer[] = [];
  /**
   * Records are encoded straight into a large chunk rather than one Buffer
   * each (one allocation per ~thousands of records on the hot path); the
   * region [chunkStart, chunkUsed) is sealed into `pending` when a write starts.
   */
  private chunk: Buffer | null = null;
  /**
   * Full chunks whose last region waits for its write, then up to two written
   * ones kept for reuse: a new 1 MiB chunk every ~4,000 readings was 5 MB/s of
   * external memory at 20,000 readings/s, which V8 answers with collections.
   */
  private retired: Buffer[] = [];
  private readonly spare: Buffer[] = [];
  /** chunks allocated so far (the rest were reused) */
  chunksAllocated = 0;
  private chunkStart = 0;
  private chunkUsed = 0;
  private pendingBytes = 0;
  private pendingNeedsSync = false;
  /** sum of the segments' sizes */
  private diskBytes = 0;
  /** the resolvers of the pending groups' promises (more than one only after a failed write) */
  private pendingWaiters: Array<() => void> = [];
  /**
   * One promise per group, shared by every record appended to it: a publish
   * costs no promise or closure of its own (at 20,000 readings/s that was
   * 20,000 of each per second for the collector).
   */
  private groupDurable: Promise<void> | null = null;
  private flushing: Promise<void> | null = null;
  private readonly committedBySink = new Map<string, number>();
  private persistedBySink = new Map<string, number>();
  private spaceWaiters: Array<() => void> = [];
  private writtenWaiters: Array<() => void> = [];
  private commitTimer: NodeJS.Timeout | null = null;
  private persisting: Promise<void> = Promise.resolve();
  private closed = false;
  /** a failed roll is tried again from here on; meanwhile the current segment keeps growing */
  private rollRetryAt = 0;
  private rollFailures = 0;
  private commitFailures = 0;
  readonly segmentBytes: number;
  /** number of write+fsync rounds, for the group-commit test and metrics */
  syncs = 0;

  private ioError(op: string, err: unknown): void {
    if (this.opts.onIoError) this.opts.onIoError(op, err);
    else this.opts.log.warn({ err, op }, 'durable log: file error, retrying');
  }

  private constructor(private readonly opts: DurableLogOptions) {
    this.segmentBytes =
      opts.segmentBytes ?? Math.max(1024 * 1024, Math.min(64 * 1024 * 1024, Math.floor(opts.maxBytes / 16)));
  }

  /** Open (creating when missing) and recover: a torn or corrupt tail is truncated and logged. */
  static async open(opts: DurableLogOptions): Promise<DurableLog> {
    const log = new DurableLog(opts);
    await log.recover();
    return log;
  }

  private async recover(): Promise<void> {
    const { dir, log } = this.opts;
    await mkdirPrivate(dir);
    const bases = readdirSync(dir)
      .map((f) => SEGMENT_RE.exec(f))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
    for (const f of readdirSync(dir)) {
      const m = /^committed\.(.+)$/.exec(f);
      if (!m) continue;
      if (f.endsWith('.tmp')) continue;
      const n = Number((await readFileNoFollow(join(dir, f), 'utf8')).trim());
      if (Number.isSafeInteger(n) && n >= 0) {
        this.committedBySink.set(m[1]!, n);
        this.persistedBySink.set(m[1]!, n);
      }
    }
    for (const [i, base] of bases.entries()) {
      const path = join(dir, segName(base));
      // a planted link (or hard link) would be truncated and appended through: refused, naming it
      await checkOwnFile(path);
      const buf = await readFileNoFollow(path);
      const { valid, corrupt } = scanRecords(buf, base);
      if (valid < buf.length) {
        const last = i === bases.length - 1;
        log.warn(
          { segment: path, validBytes: valid, droppedBytes: buf.length - valid, corrupt },
          last
            ? 'durable log: torn tail truncated'
            : 'durable log: corrupt record inside a segment; the rest of that segment is dropped',
        );
        const fh = await openNoFollow(path, 'r+');
        try {
          await fh.truncate(valid);
        } finally {
          await fh.close();
        }
      }
      this.segments.push({ base, size: valid });
      this.diskBytes += valid;
    }
    const last = this.segments.at(-1);
    const start = last ? last.base + last.size : Math.max(0, ...this.committedBySink.values());
    this.appendEnd = this.writtenEnd = start;
    if (!last || last.size >= this.segmentBytes) await this.roll();
    else this.fh = await openNoFollow(join(dir, segName(last.base)), 'a');
  }

  get endOffset(): number {
    return this.appendEnd;
  }

  get firstOffset(): number {
    return this.segments[0]?.base ?? this.appendEnd;
  }

  /** Bytes on disk, pending appends included (asked per message: kept as a running count). */
  get bytes(): number {
    return this.diskBytes + this.pendingBytes;
  }

  /** Bytes appended but not yet written to the file (held in memory; admission control bounds them). */
  get buffered(): number {
    return this.appendEnd - this.writtenEnd;
  }

  get full(): boolean {
    return this.bytes >= this.opts.maxBytes;
  }

  committed(sink: string): number {
    return this.committedBySink.get(sink) ?? this.firstOffset;
  }

  /** Resolves when segment deletion has made room under maxBytes. */
  waitForSpace(): Promise<void> {
    if (!this.full) return Promise.resolve();
    return new Promise((resolve) => this.spaceWaiters.push(resolve));
  }

  /**
   * `sync: false` for records nobody waits on (QoS 0 has no acknowledgement):
   * a group made only of those is written without an fsync. The next synced
   * group's fdatasync covers them too.
   */
  append(rec: LogRecord, sync = true): Appended {
    if (this.closed) throw new Error('durable log is closed');
    const worst = HEADER + worstBody(rec);
    if (this.chunk === null || this.chunk.length - this.chunkUsed < worst) this.newChunk(worst);
    const chunk = this.chunk!;
    const at = this.chunkUsed;
    const len = encodeBody(chunk, at + HEADER, rec);
    chunk.writeUInt32LE(len, at);
    chunk.writeUInt32LE(crc32(chunk.subarray(at + HEADER, at + HEADER + len)), at + 4);
    this.chunkUsed += HEADER + len;
    const start = this.appended(len, sync);
    return { start, end: this.appendEnd, durable: this.groupDurable! };
  }

  /**
   * Append a record its producer encodes in place (BodyEncoder); returns its
   * start offset, or -1 when the encoder wrote nothing. Its end is `endOffset`, and
   * `lastDurable` resolves when it is on disk, until the next append.
   */
  appendEncoded(encoder: BodyEncoder, sync = true): number {
    if (this.closed) throw new Error('durable log is closed');
    let room = HEADER + encoder.estimate;
    for (;;) {
      if (this.chunk === null || this.chunk.length - this.chunkUsed < room) this.newChunk(room);
      const chunk = this.chunk!;
      const at = this.chunkUsed;
      const end = encoder.encode(chunk, at + HEADER, chunk.length);
      if (end === at + HEADER) return -1;
      if (end < 0) {
        // did not fit: ask for twice the room (the chunk holds at least that much afterwards)
        room = Math.max(room * 2, chunk.length - at + 1);
        if (room > MAX_RECORD) throw new Error(`a record does not fit in ${MAX_RECORD} bytes`);
        continue;
      }
      const len = end - at - HEADER;
      chunk.writeUInt32LE(len, at);
      chunk.writeUInt32LE(crc32(chunk.subarray(at + HEADER, end)), at + 4);
      this.chunkUsed = end;
      return this.appended(len, sync);
    }
  }

  /** what appendEncoded's record waits on */
  get lastDurable(): Promise<void> {
    return this.groupDurable!;
  }

  private appended(len: number, sync: boolean): number {
    const start = this.appendEnd;
    this.appendEnd += HEADER + len;
    this.pendingBytes += HEADER + len;
    if (sync) this.pendingNeedsSync = true;
    if (this.groupDurable === null) {
      this.groupDurable = new Promise<void>((resolve) => this.pendingWaiters.push(resolve));
    }
    if (!this.flushing) this.flushing = this.flushLoop();
    return start;
  }

  /** The current chunk's last region sealed, a chunk with at least `room` bytes (a spare one if it fits). */
  private newChunk(room: number): void {
    this.seal();
    if (this.chunk) this.retired.push(this.chunk);
    let next = room <= CHUNK ? this.spare.pop() : undefined;
    if (next === undefined) {
      next = Buffer.allocUnsafe(Math.max(CHUNK, room));
      this.chunksAllocated++;
    }
    this.chunk = next;
    this.chunkStart = this.chunkUsed = 0;
  }

  private seal(): void {
    if (this.chunk && this.chunkUsed > this.chunkStart) {
      this.pending.push(this.chunk.subarray(this.chunkStart, this.chunkUsed));
      this.chunkStart = this.chunkUsed;
    }
  }

  /**
   * Never rejects: every file error is retried here (the records already have
   * offsets and their publishers wait), so nothing on this path can become an
   * unhandled rejection that ends the process.
   */
  private async flushLoop(): Promise<void> {
    // setImmediate first: every append of the current I/O round joins this group
    await new Promise((r) => setImmediate(r));
    let failures = 0;
    for (this.seal(); this.pending.length; this.seal()) {
      const bufs = this.pending;
      // every region of these is in bufs or written before: reusable once bufs are written
      const retired = this.retired;
      this.retired = [];
      const waiters = this.pendingWaiters;
      const size = this.pendingBytes;
      const needsSync = this.pendingNeedsSync;
      this.pending = [];
      this.pendingBytes = 0;
      this.pendingNeedsSync = false;
      this.pendingWaiters = [];
      this.groupDurable = null;
      const seg = this.segments.at(-1)!;
      try {
        const fh = this.fh!;
        await fh.writev(bufs);
        if (needsSync && this.opts.durability === 'fsync') await fh.datasync();
      } catch (err) {
        // Disk full or an I/O error. The records already have offsets (the
        // pipeline may hold them), so they are neither dropped nor renumbered:
        // cut off any partial write and try the same bytes again. Their
        // publishers stay unacknowledged meanwhile; so do new ones behind them.
        failures++;
        this.ioError(needsSync ? 'log_append_fsync' : 'log_append', err);
        if (failures === 1 || failures % 30 === 0)
          this.opts.log.error({ err, failures }, 'durable log write failed; retrying');
        await this.fh!.truncate(seg.size).catch(() => {});
        await new Promise((r) => setTimeout(r, DISK_RETRY.delayMs(failures)));
        this.pending = [...bufs, ...this.pending];
        this.retired = [...retired, ...this.retired];
        this.pendingBytes += size;
        this.pendingNeedsSync ||= needsSync;
        this.pendingWaiters = [...waiters, ...this.pendingWaiters];
        continue;
      }
      failures = 0;
      for (const c of retired) if (c.length === CHUNK && this.spare.length < 2) this.spare.push(c);
      this.syncs++;
      seg.size += size;
      this.diskBytes += size;
      this.writtenEnd += size;
      for (const w of waiters) w();
      for (const w of this.writtenWaiters.splice(0)) w();
      if (seg.size >= this.segmentBytes && Date.now() >= this.rollRetryAt) await this.tryRoll();
    }
    this.flushing = null;
  }

  /**
   * Roll on the hot path. Opening the next segment needs a descriptor, which
   * may be exactly what is missing (EMFILE under a connection flood): then the
   * current segment stays open and keeps taking records (it may grow past
   * segmentBytes), and the roll is tried again after a short backoff. Nothing
   * waits on a roll, so nothing stalls.
   */
  private async tryRoll(): Promise<void> {
    try {
      await this.roll();
      this.rollFailures = 0;
      this.rollRetryAt = 0;
    } catch (err) {
      this.rollFailures++;
      this.rollRetryAt = Date.now() + DISK_RETRY.delayMs(this.rollFailures);
      this.ioError('log_roll', err);
    }
  }

  /** The next segment is opened before the current one is closed, so a failed open leaves a usable log. */
  private async roll(): Promise<void> {
    const base = this.writtenEnd;
    const next = await openNoFollow(join(this.opts.dir, segName(base)), 'a');
    const prev = this.fh;
    this.fh = next;
    this.segments.push({ base, size: 0 });
    // every byte of prev is written (and synced when anyone waited on it); a close error loses nothing
    await prev?.close().catch((err: unknown) => this.ioError('log_close', err));
  }

  /** Resolves once more data has been written after `offset` (for readers that caught up). */
  waitWritten(offset: number): Promise<void> {
    if (this.writtenEnd > offset || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.writtenWaiters.push(resolve));
  }

  get written(): number {
    return this.writtenEnd;
  }

  /**
   * Records from `from` (a record boundary) up to what is written, at most
   * about `maxBytes` of them. Reads the files: used to catch up after an outage
   * or a restart, when the records are no longer held in memory.
   */
  async read(from: number, maxBytes: number): Promise<StoredRecord[]> {
    const seg = [...this.segments].reverse().find((s) => s.base <= from);
    if (!seg) return [];
    const limit = Math.min(seg.base + seg.size, this.writtenEnd);
    if (from >= limit) {
      // the end of a segment that has been rolled: continue in the next one
      const next = this.segments.find((s) => s.base > seg.base);
      return next && from === seg.base + seg.size ? this.read(next.base, maxBytes) : [];
    }
    const fh = await openNoFollow(join(this.opts.dir, segName(seg.base)), 'r');
    try {
      const want = Math.min(limit - from, Math.max(maxBytes, 64 * 1024));
      const buf = Buffer.allocUnsafe(want);
      const { bytesRead } = await fh.read(buf, 0, want, from - seg.base);
      let { records, valid } = scanRecords(buf.subarray(0, bytesRead), from);
      if (records.length === 0 && valid === 0 && bytesRead >= HEADER) {
        // one record larger than the read window
        const len = buf.readUInt32LE(0);
        // a length no record can have (corruption, or not a record boundary): nothing readable here.
        // Without this a garbage length asked fs for up to 4 GiB and node aborted on the assertion.
        if (len === 0 || len > MAX_RECORD) return [];
        const big = Buffer.allocUnsafe(HEADER + len);
        await fh.read(big, 0, big.length, from - seg.base);
        ({ records, valid } = scanRecords(big, from));
      }
      return records;
    } finally {
      await fh.close();
    }
  }

  /** The sink has everything below `offset`; persisted shortly after (batched), segments freed. */
  commit(sink: string, offset: number): void {
    if (offset <= (this.committedBySink.get(sink) ?? -1)) return;
    this.committedBySink.set(sink, offset);
    this.scheduleCommit(100);
  }

  /**
   * A failed commit-file write (EMFILE, ENOSPC) is tried again on its own:
   * segment deletion, and so the disk budget that paused publishers wait on,
   * depends on it even when no further batch finishes to trigger it.
   */
  private scheduleCommit(delayMs: number): void {
    if (this.closed) return;
    this.commitTimer ??= setTimeout(() => {
      this.commitTimer = null;
      this.persistCommits().then(
        () => {
          this.commitFailures = 0;
        },
        (err: unknown) => {
          this.commitFailures++;
          this.ioError('log_commit', err);
          this.scheduleCommit(DISK_RETRY.delayMs(this.commitFailures));
        },
      );
    }, delayMs);
  }

  /** Serialised: a timer-driven persist and the one at close must not race on the same temp file. */
  persistCommits(): Promise<void> {
    // a failed earlier round must not stop this one
    this.persisting = this.persisting.catch(() => {}).then(() => this.persistNow());
    return this.persisting;
  }

  private async persistNow(): Promise<void> {
    for (const [sink, offset] of this.committedBySink) {
      if (this.persistedBySink.get(sink) === offset) continue;
      const path = join(this.opts.dir, `committed.${sink}`);
      await writeFileAtomicPrivate(path, `${offset}\n`);
      this.persistedBySink.set(sink, offset);
    }
    await this.deleteCommittedSegments();
  }

  private async deleteCommittedSegments(): Promise<void> {
    const nearFull = this.bytes >= this.opts.maxBytes * 0.9;
    const soft = new Set(this.opts.softSinks ?? []);
    const persisted = [...this.persistedBySink]
      .filter(([sink]) => !(nearFull && soft.has(sink)))
      .map(([, o]) => o);
    if (persisted.length === 0) return;
    const low = Math.min(...persisted);
    // every segment whose successor starts at or below the committed offset is fully sent
    while (this.segments.length > 1 && this.segments[1]!.base <= low) {
      const seg = this.segments.shift()!;
      this.diskBytes -= seg.size;
      await rm(join(this.opts.dir, segName(seg.base)), { force: true });
    }
    if (!this.full) for (const w of this.spaceWaiters.splice(0)) w();
  }

  async close(): Promise<void> {
    while (this.flushing) await this.flushing;
    this.closed = true;
    if (this.commitTimer) clearTimeout(this.commitTimer);
    this.commitTimer = null;
    await this.persistCommits();
    await this.fh?.close();
    this.fh = null;
    for (const w of this.writtenWaiters.splice(0)) w();
  }
}

export function logDir(dataDir: string): string {
  return join(dataDir, 'log');
}

export function segmentFiles(dir: string): Array<{ name: string; size: number }> {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => SEGMENT_RE.test(f))
    .sort()
    .map((name) => ({ name, size: statSync(join(dir, name)).size }));
}
