import { IngestError } from '../errors.js';
import { redactText, redactUrl } from '../redact.js';
import { type PostAnswer, post } from './httpPost.js';
import { influxPingOk } from './ping.js';
import {
  type BackslashMode,
  classifyStatus,
  type NewlineMode,
  networkMessage,
  type Sink,
  type WriteResult,
} from './sink.js';

export interface InfluxV1Options {
  readonly url: string;
  readonly database: string;
  readonly username?: string;
  readonly password?: string;
  readonly timeoutMs: number;
  readonly backslashMode: BackslashMode;
  /** 'raw' only for a server that said it is InfluxDB (see ingest/lineProtocol.ts); default 'escape' */
  readonly newlines?: NewlineMode;
}

/** InfluxDB 1.x HTTP API: POST /write?db=…&precision=ms; the database is created when missing. */
export class InfluxV1Sink implements Sink {
  readonly name = 'influxdb-v1';
  readonly backslashMode: BackslashMode;
  readonly newlines: NewlineMode;
  private readonly base: string;
  private readonly writeUrl: URL;
  private readonly headers: Record<string, string>;

  constructor(private readonly opts: InfluxV1Options) {
    this.backslashMode = opts.backslashMode;
    this.newlines = opts.newlines ?? 'escape';
    this.base = opts.url.replace(/\/+$/, '');
    this.writeUrl = new URL(`${this.base}/write?db=${encodeURIComponent(opts.database)}&precision=ms`);
    this.headers = { 'content-type': 'text/plain; charset=utf-8' };
    if (opts.username) {
      const basic = Buffer.from(`${opts.username}:${opts.password ?? ''}`).toString('base64');
      this.headers.authorization = `Basic ${basic}`;
    }
  }

  async connect(): Promise<void> {
    await this.createDatabase();
  }

  private async createDatabase(): Promise<void> {
    const q = `CREATE DATABASE "${this.opts.database.replace(/["\\]/g, '\\$&')}"`;
    let res: Response;
    try {
      res = await fetch(`${this.base}/query`, {
        method: 'POST',
        headers: { ...this.headers, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ q }),
        signal: AbortSignal.timeout(this.opts.timeoutMs),
      });
    } catch (err) {
      throw new IngestError(
        'EI_INFLUX_UNREACHABLE',
        `InfluxDB at ${redactUrl(this.base)} did not answer: ${redactText((err as Error).message)}`,
        { cause: err },
      );
    }
    const body = await res.text();
    if (res.status === 401 || res.status === 403) {
      throw new IngestError(
        'EI_INFLUX_AUTH',
        `InfluxDB refused the credentials (${res.status}): check INFLUX_USERNAME/INFLUX_PASSWORD (or user:password@ in INFLUX_URL): ${body.slice(0, 200)}`,
      );
    }
    if (!res.ok || body.includes('"error"')) {
      throw new IngestError(
        'EI_INFLUX_WRITE',
        `CREATE DATABASE ${this.opts.database} failed (${res.status}): ${body.slice(0, 200)}`,
      );
    }
  }

  async write(body: Buffer): Promise<WriteResult> {
    let res: PostAnswer;
    try {
      res = await post(this.writeUrl, this.headers, body, this.opts.timeoutMs);
    } catch (err) {
      return { kind: 'retry', message: networkMessage(err) };
    }
    if (res.status === 204 || res.status === 200) return { kind: 'ok' };
    const text = res.text.slice(0, 1000);
    if (res.status === 404 && text.includes('database not found')) {
      // Dropped while we run: recreate it and write again.
      try {
        await this.createDatabase();
      } catch (err) {
        return { kind: 'retry', status: 404, message: (err as Error).message };
      }
      return { kind: 'retry', status: 404, retryAfterMs: 0, message: text };
    }
    return classifyStatus(res.status, text, res.retryAfter);
  }

  ping(): Promise<void> {
    return influxPingOk(this.base, this.opts.timeoutMs);
  }

  async close(): Promise<void> {}
}
