import { appendFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { RejectReason } from '../ingest/reading.js';
import { retryPolicy } from './retry.js';

// {dataDir}/deadletter/YYYY-MM-DD.jsonl, one JSON object per rejected message
// (contract section 6). Appends are queued and written in order; each record
// is small and the queue is bounded by the publishers waiting on it.

export interface DeadLetterRecord {
  readonly receivedAtMs: number;
  readonly clientId: string | null;
  readonly topic: string;
  readonly reason: RejectReason;
  readonly detail: string;
  readonly payload: Buffer | string;
}

const MAX_PAYLOAD = 64 * 1024;
/** errors worth another append: the fd table (or the kernel's) is full for now */
const TRANSIENT = new Set(['EMFILE', 'ENFILE', 'EAGAIN', 'EINTR', 'EBUSY']);
const RETRY = retryPolicy('diskIo');
const utf8 = new TextDecoder('utf-8', { fatal: true });

export function formatDeadLetter(r: DeadLetterRecord): string {
  const bytes = typeof r.payload === 'string' ? Buffer.from(r.payload) : r.payload;
  const cut = bytes.subarray(0, MAX_PAYLOAD);
  let payload: string;
  let encoding: 'base64' | undefined;
  try {
    payload = utf8.decode(cut);
  } catch {
    // Either not UTF-8 at all, or the 64 KiB cut split a character: base64 keeps the bytes exact.
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
  if (bytes.length > MAX_PAYLOAD) rec.payload_truncated = true;
  return JSON.stringify(rec);
}

export class DeadLetterWriter {
  private readonly dir: string;
  private pending: Array<{ day: string; line: string }> = [];
  private flushing: Promise<void> | null = null;
  private waiters: Array<() => void> = [];
  written = 0;
  failures = 0;

  constructor(
    dataDir: string,
    private readonly onError: (err: Error) => void,
  ) {
    this.dir = join(dataDir, 'deadletter');
  }

  async open(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
  }

  /** Resolves once the record is on disk. */
  append(r: DeadLetterRecord): Promise<void> {
    const day = new Date(r.receivedAtMs).toISOString().slice(0, 10);
    this.pending.push({ day, line: formatDeadLetter(r) });
    const done = new Promise<void>((resolve) => this.waiters.push(resolve));
    void this.kick();
    return done;
  }

  pathFor(day: string): string {
    return join(this.dir, `${day}.jsonl`);
  }

  private kick(): Promise<void> {
    if (this.flushing) return this.flushing;
    this.flushing = (async () => {
      while (this.pending.length) {
        const batch = this.pending;
        const waiters = this.waiters;
        this.pending = [];
        this.waiters = [];
        const byDay = new Map<string, typeof batch>();
        for (const p of batch) byDay.set(p.day, [...(byDay.get(p.day) ?? []), p]);
        for (const [day, items] of byDay) {
          const text = `${items.map((p) => p.line).join('\n')}\n`;
          for (let attempt = 1; ; attempt++) {
            try {
              await appendFile(this.pathFor(day), text);
              this.written += items.length;
              break;
            } catch (err) {
              this.onError(err as Error);
              // out of descriptors is a moment (a connection flood), so wait and append again
              // (the publishers wait on this); anything else, or for too long: counted as lost
              if (!TRANSIENT.has((err as NodeJS.ErrnoException).code ?? '') || attempt >= 12) {
                this.failures += items.length;
                break;
              }
              await new Promise((r) => setTimeout(r, RETRY.delayMs(attempt)));
            }
          }
        }
        for (const w of waiters) w();
      }
      this.flushing = null;
    })();
    return this.flushing;
  }

  async close(): Promise<void> {
    while (this.flushing || this.pending.length) await this.kick();
  }
}
