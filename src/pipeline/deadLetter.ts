import { readdir, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { RejectReason } from '../ingest/reading.js';
import { retryPolicy } from '../retry.js';
import { appendFileNoFollow, checkOwnFile, mkdirPrivate } from '../safeFs.js';

// {dataDir}/deadletter/YYYY-MM-DD.jsonl, one JSON object per rejected message
// (contract section 6). Appends are queued and written in order.
//
// Bounded on disk and in memory (issue 11 item 8: one sensor wrote 77 MB of
// dead letters from 12.8 MB of payloads in 0.35 s):
// - a payload whose JSON-escaped text is larger than its base64 (control
//   bytes become `\u00XX`, six bytes each) is stored as base64 with
//   "payload_encoding":"base64": at most ~1.34× the payload's bytes;
// - the files together stay within `maxBytes`: a day file is rotated to
//   YYYY-MM-DD.N.jsonl when it passes `maxFileBytes`, files of earlier days
//   are deleted oldest first to make room, and a record that still does not
//   fit (today's files fill the budget) is dropped and counted (`budget`);
// - once the files hold more than half the budget, payloads are cut at
//   PRESSURE_PAYLOAD bytes (payload_truncated: true), so a flood leaves more
//   records, each still showing what was sent;
// - records waiting to be written hold at most `maxQueuedBytes`; beyond it a
//   rejection is dropped and counted (`queue_full`) instead of queued.

export interface DeadLetterRecord {
  readonly receivedAtMs: number;
  readonly clientId: string | null;
  readonly topic: string;
  readonly reason: RejectReason;
  readonly detail: string;
  readonly payload: Buffer | string;
}

export type DeadLetterDropReason = 'budget' | 'queue_full';

/** errors worth another append: the fd table (or the kernel's) is full for now */
const TRANSIENT = new Set(['EMFILE', 'ENFILE', 'EAGAIN', 'EINTR', 'EBUSY']);
const RETRY = retryPolicy('diskIo');

const MAX_PAYLOAD = 64 * 1024;
/** payload bytes kept per record while the files hold more than half their budget */
export const PRESSURE_PAYLOAD = 1024;
const utf8 = new TextDecoder('utf-8', { fatal: true });
/** what `"payload_encoding":"base64"` adds to a record */
const BASE64_MARK = ',"payload_encoding":"base64"'.length;

// JSON.stringify leaves U+0085, U+2028 and U+2029 raw, and line readers such as
// Python's str.splitlines() end a line there (issue 12 item 7): written as
// \uXXXX escapes, one record is one line for every reader.
const LINE_BREAKS = /[\u0085\u2028\u2029]/g;

/** JSON.stringify, with every character some reader takes for a line end escaped. */
export function jsonLine(v: unknown): string {
  return JSON.stringify(v).replace(LINE_BREAKS, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export function formatDeadLetter(r: DeadLetterRecord, maxPayload = MAX_PAYLOAD): string {
  const bytes = typeof r.payload === 'string' ? Buffer.from(r.payload) : r.payload;
  const cut = bytes.subarray(0, maxPayload);
  let payload: string;
  let encoding: 'base64' | undefined;
  try {
    payload = utf8.decode(cut);
    // the smaller of the two: JSON escapes control bytes as \u00XX (6 bytes for 1), quotes and
    // backslashes as 2; base64 is 4 bytes per 3 whatever the content
    const b64 = Math.ceil(cut.length / 3) * 4 + BASE64_MARK;
    if (Buffer.byteLength(jsonLine(payload)) - 2 > b64) {
      payload = cut.toString('base64');
      encoding = 'base64';
    }
  } catch {
    // Either not UTF-8 at all, or the cut split a character: base64 keeps the bytes exact.
    payload = cut.toString('base64');
    encoding = 'base64';
  }
  const rec: Record<string, unknown> = {
    received_at: new Date(r.receivedAtMs).toISOString(),
    client_id: r.clientId,
    topic: r.topic,
    reason: r.reason,
    detail: r.detail,
    payload,
  };
  if (encoding) rec.payload_encoding = encoding;
  if (bytes.length > maxPayload) rec.payload_truncated = true;
  return jsonLine(rec);
}

export interface DeadLetterOptions {
  readonly dataDir: string;
  /** all dead-letter files together */
  readonly maxBytes: number;
  /** a day file is rotated past this size */
  readonly maxFileBytes: number;
  /** formatted records waiting to be written */
  readonly maxQueuedBytes: number;
  readonly onError: (err: Error) => void;
  readonly onDrop?: (reason: DeadLetterDropReason, n: number) => void;
}

interface DayFile {
  readonly day: string;
  /** rotated parts count up from 1; the live file (YYYY-MM-DD.jsonl) is Infinity */
  readonly part: number;
  bytes: number;
}

const FILE_RE = /^(\d{4}-\d{2}-\d{2})(?:\.(\d+))?\.jsonl$/;

export class DeadLetterWriter {
  private readonly dir: string;
  private pending: Array<{ day: string; line: string }> = [];
  private pendingBytes = 0;
  private flushing: Promise<void> | null = null;
  private waiters: Array<() => void> = [];
  /** every dead-letter file, oldest first */
  private files: DayFile[] = [];
  /** bytes of `files` */
  diskBytes = 0;
  written = 0;
  failures = 0;
  dropped = 0;

  constructor(private readonly opts: DeadLetterOptions) {
    this.dir = join(opts.dataDir, 'deadletter');
  }

  async open(): Promise<void> {
    await mkdirPrivate(this.dir);
    this.files = [];
    for (const name of await readdir(this.dir)) {
      const m = FILE_RE.exec(name);
      if (!m) continue;
      // lstat: a planted link (or another user's file) stops start-up, named, instead of being written through
      const st = await checkOwnFile(join(this.dir, name));
      this.files.push({
        day: m[1]!,
        part: m[2] === undefined ? Number.POSITIVE_INFINITY : Number(m[2]),
        bytes: st.size,
      });
    }
    this.sortFiles();
    this.diskBytes = this.files.reduce((n, f) => n + f.bytes, 0);
  }

  private sortFiles(): void {
    this.files.sort((a, b) => (a.day < b.day ? -1 : a.day > b.day ? 1 : a.part - b.part));
  }

  /** Resolves once the record is on disk, or at once when it is dropped (counted). */
  append(r: DeadLetterRecord): Promise<void> {
    const day = new Date(r.receivedAtMs).toISOString().slice(0, 10);
    const pressed = this.diskBytes + this.pendingBytes > this.opts.maxBytes / 2;
    const line = formatDeadLetter(r, pressed ? PRESSURE_PAYLOAD : MAX_PAYLOAD);
    if (this.pendingBytes + line.length > this.opts.maxQueuedBytes && this.pending.length) {
      this.drop('queue_full', 1);
      return Promise.resolve();
    }
    this.pending.push({ day, line });
    this.pendingBytes += line.length;
    const done = new Promise<void>((resolve) => this.waiters.push(resolve));
    void this.kick();
    return done;
  }

  pathFor(day: string, part = Number.POSITIVE_INFINITY): string {
    return join(this.dir, part === Number.POSITIVE_INFINITY ? `${day}.jsonl` : `${day}.${part}.jsonl`);
  }

  private drop(reason: DeadLetterDropReason, n: number): void {
    this.dropped += n;
    this.opts.onDrop?.(reason, n);
  }

  private kick(): Promise<void> {
    if (this.flushing) return this.flushing;
    this.flushing = (async () => {
      while (this.pending.length) {
        const batch = this.pending;
        const waiters = this.waiters;
        let batchBytes = 0;
        for (const p of batch) batchBytes += p.line.length;
        this.pending = [];
        this.waiters = [];
        const byDay = new Map<string, string[]>();
        for (const p of batch) {
          const list = byDay.get(p.day);
          if (list) list.push(p.line);
          else byDay.set(p.day, [p.line]);
        }
        for (const [day, lines] of byDay) {
          try {
            await this.writeDay(day, lines);
          } catch (err) {
            this.opts.onError(err as Error);
          }
        }
        this.pendingBytes -= batchBytes;
        for (const w of waiters) w();
      }
      this.flushing = null;
    })();
    return this.flushing;
  }

  private live(day: string): DayFile {
    let f = this.files.find((x) => x.day === day && x.part === Number.POSITIVE_INFINITY);
    if (!f) {
      f = { day, part: Number.POSITIVE_INFINITY, bytes: 0 };
      this.files.push(f);
      this.sortFiles();
    }
    return f;
  }

  /** Appends what fits: rotating the day file at maxFileBytes, making room or dropping at maxBytes. */
  private async writeDay(day: string, lines: string[]): Promise<void> {
    let chunk: string[] = [];
    let chunkBytes = 0;
    const flush = async () => {
      if (!chunk.length) return;
      const f = this.live(day);
      const text = `${chunk.join('\n')}\n`;
      const n = chunk.length;
      chunk = [];
      chunkBytes = 0;
      for (let attempt = 1; ; attempt++) {
        try {
          await appendFileNoFollow(this.pathFor(day), text);
          f.bytes += Buffer.byteLength(text);
          this.diskBytes += Buffer.byteLength(text);
          this.written += n;
          return;
        } catch (err) {
          this.opts.onError(err as Error);
          await this.resync(f);
          // out of descriptors is a moment (a connection flood), so wait and append again
          // (the publishers wait on this); anything else, or for too long: counted as lost
          if (!TRANSIENT.has((err as NodeJS.ErrnoException).code ?? '') || attempt >= 12) {
            this.failures += n;
            return;
          }
          await new Promise((r) => setTimeout(r, RETRY.delayMs(attempt)));
        }
      }
    };
    for (const line of lines) {
      const n = Buffer.byteLength(line) + 1;
      const live = this.live(day);
      if (live.bytes + chunkBytes > 0 && live.bytes + chunkBytes + n > this.opts.maxFileBytes) {
        await flush();
        await this.rotate(day);
      }
      if (this.diskBytes + chunkBytes + n > this.opts.maxBytes) {
        await this.freeBefore(day, this.diskBytes + chunkBytes + n - this.opts.maxBytes);
        if (this.diskBytes + chunkBytes + n > this.opts.maxBytes) {
          this.drop('budget', 1);
          continue;
        }
      }
      chunk.push(line);
      chunkBytes += n;
    }
    await flush();
  }

  /** YYYY-MM-DD.jsonl becomes YYYY-MM-DD.N.jsonl (N one more than the day's newest part). */
  private async rotate(day: string): Promise<void> {
    const live = this.live(day);
    if (live.bytes === 0) return;
    let part = 1;
    for (const f of this.files)
      if (f.day === day && f.part !== Number.POSITIVE_INFINITY) part = Math.max(part, f.part + 1);
    try {
      await checkOwnFile(this.pathFor(day));
      await rename(this.pathFor(day), this.pathFor(day, part));
    } catch (err) {
      this.opts.onError(err as Error);
      return;
    }
    this.files = this.files.filter((f) => f !== live);
    this.files.push({ day, part, bytes: live.bytes });
    this.sortFiles();
  }

  /** Deletes files of days before `day`, oldest first, until `need` bytes are freed or none is left. */
  private async freeBefore(day: string, need: number): Promise<void> {
    let freed = 0;
    while (freed < need) {
      const oldest = this.files[0];
      if (!oldest || oldest.day >= day) return;
      this.files.shift();
      try {
        await unlink(this.pathFor(oldest.day, oldest.part));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
          this.opts.onError(err as Error);
          this.files.unshift(oldest);
          return;
        }
      }
      this.diskBytes -= oldest.bytes;
      freed += oldest.bytes;
    }
  }

  /** after a failed append: the file's real size (part of the text may have been written) */
  private async resync(f: DayFile): Promise<void> {
    try {
      // a planted link counts nothing (its target is not ours)
      const size = (await checkOwnFile(this.pathFor(f.day, f.part))).size;
      this.diskBytes += size - f.bytes;
      f.bytes = size;
    } catch {
      // the file is not there: nothing of it counts
      this.diskBytes -= f.bytes;
      f.bytes = 0;
    }
  }

  async close(): Promise<void> {
    while (this.flushing || this.pending.length) await this.kick();
  }
}
