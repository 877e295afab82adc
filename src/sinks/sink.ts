import { redactText } from '../redact.js';

// How a sink's server reads InfluxDB line protocol. Escaping differs between servers, so
// it is a parameter (both behaviours verified against the real servers in
// tests/integration/line-protocol.test.ts; the encoder is ingest/lineProtocol.ts):
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

// Every sink has the same small shape (Telegraf's Output, Vector's service):
// connect / write / close. A sink classifies the server's answer; it never
// buffers or retries — pipeline/writer.ts owns that.

export type WriteResult =
  | { readonly kind: 'ok' }
  /** transient: network error, 5xx, 429, 401/403 — keep the batch and try again */
  | {
      readonly kind: 'retry';
      readonly status?: number;
      readonly retryAfterMs?: number;
      readonly message: string;
    }
  /** 413: the batch must be split */
  | { readonly kind: 'too_large'; readonly message: string }
  /** 400/422/other 4xx: some line in the batch is bad; bisect to find it */
  | { readonly kind: 'reject'; readonly status: number; readonly message: string };

export interface Sink {
  readonly name: string;
  /** how tags must be escaped for this server */
  readonly backslashMode: BackslashMode;
  /** line breaks in string fields (ingest/lineProtocol.ts); undefined: 'escape' */
  readonly newlines?: NewlineMode;
  /** Prepare (create database, check bucket). Throws IngestError on a fatal misconfiguration. */
  connect(): Promise<void>;
  /**
   * `count` lines of line protocol, millisecond precision, "\n" between them
   * and none after the last (the pipeline's batch body, pipeline/batch.ts).
   */
  write(body: Buffer, count: number): Promise<WriteResult>;
  /** round trip to the server, for check and /ready */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** Telegraf's status table (plugins/outputs/influxdb_v2/http.go), shared by the HTTP sinks. */
export function classifyStatus(
  status: number,
  message: string,
  retryAfterHeader: string | null,
): WriteResult {
  if (status >= 200 && status < 300) return { kind: 'ok' };
  if (status === 413) return { kind: 'too_large', message };
  if (status === 429 || status >= 500 || status === 401 || status === 403) {
    return { kind: 'retry', status, retryAfterMs: parseRetryAfter(retryAfterHeader), message };
  }
  return { kind: 'reject', status, message };
}

export function parseRetryAfter(header: string | null | undefined, now = Date.now()): number | undefined {
  if (!header) return undefined;
  const trimmed = header.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  return Number.isFinite(at) ? Math.max(0, at - now) : undefined;
}

/**
 * A network error's text with its cause: undici reports every failure as
 * "fetch failed", and the reason (ECONNREFUSED, EMFILE when this process is
 * out of descriptors, a timeout) is only in `cause`.
 */
export function networkMessage(err: unknown): string {
  const e = err as Error & { code?: string; cause?: { code?: string; message?: string } };
  // fetch (undici) puts the reason in `cause`; node:http (httpPost.ts) in `code`
  const cause = e?.cause?.code ?? e?.cause?.message ?? e?.code;
  // fetch repeats the URL (with any user:password@) in its message
  return redactText(`network: ${e?.message ?? String(err)}${cause ? ` (${cause})` : ''}`);
}

/** Lines as one body for Sink.write: one allocation, each line encoded once, "\n" between them. */
export function bodyOf(lines: readonly string[]): Buffer {
  let size = lines.length > 0 ? lines.length - 1 : 0;
  for (const l of lines) size += Buffer.byteLength(l, 'utf8');
  const buf = Buffer.allocUnsafe(size);
  let p = 0;
  for (let i = 0; i < lines.length; i++) {
    if (i > 0) buf[p++] = 0x0a;
    p += buf.write(lines[i]!, p, 'utf8');
  }
  return buf;
}
