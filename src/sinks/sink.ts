import type { BackslashMode, NewlineMode } from '../ingest/lineProtocol.js';
import { redactText } from '../redact.js';

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
  /** lines: line protocol, millisecond precision, no trailing newline */
  write(lines: readonly string[]): Promise<WriteResult>;
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
  const e = err as Error & { cause?: { code?: string; message?: string } };
  const cause = e?.cause?.code ?? e?.cause?.message;
  // fetch repeats the URL (with any user:password@) in its message
  return redactText(`network: ${e?.message ?? String(err)}${cause ? ` (${cause})` : ''}`);
}
