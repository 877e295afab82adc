import { HttpError, InfluxDB } from '@influxdata/influxdb-client';
import { IngestError } from '../errors.js';
import { redactText, redactUrl } from '../redact.js';
import { influxPingOk } from './ping.js';
import {
  classifyStatus,
  type NewlineMode,
  networkMessage,
  parseRetryAfter,
  type Sink,
  type WriteResult,
} from './sink.js';

export interface InfluxV2Options {
  readonly url: string;
  readonly token?: string;
  readonly org: string;
  readonly bucket: string;
  readonly timeoutMs: number;
  /** 'raw' only for a server that said it is InfluxDB (see ingest/lineProtocol.ts); default 'escape' */
  readonly newlines?: NewlineMode;
}

/**
 * InfluxDB 2.x /api/v2/write through @influxdata/influxdb-client's transport.
 * The client's own WriteApi is not used: it buffers and retries by itself,
 * which would hide each batch's outcome from the pipeline that must commit or
 * dead-letter it.
 */
export class InfluxV2Sink implements Sink {
  readonly name = 'influxdb-v2';
  readonly backslashMode = 'escape' as const;
  readonly newlines: NewlineMode;
  private readonly client: InfluxDB;
  private readonly writePath: string;

  constructor(private readonly opts: InfluxV2Options) {
    this.newlines = opts.newlines ?? 'escape';
    this.client = new InfluxDB({ url: opts.url, token: opts.token, timeout: opts.timeoutMs });
    const q = new URLSearchParams({ org: opts.org, bucket: opts.bucket, precision: 'ms' });
    this.writePath = `/api/v2/write?${q}`;
  }

  async connect(): Promise<void> {
    let res: { buckets?: unknown[] };
    try {
      res = await this.client.transport.request(
        `/api/v2/buckets?${new URLSearchParams({ org: this.opts.org, name: this.opts.bucket })}`,
        null,
        { method: 'GET' },
      );
    } catch (err) {
      if (err instanceof HttpError && (err.statusCode === 401 || err.statusCode === 403)) {
        throw new IngestError(
          'EI_INFLUX_AUTH',
          `InfluxDB refused the token (${err.statusCode}): check INFLUX_TOKEN`,
        );
      }
      if (err instanceof HttpError && err.statusCode === 404 && /organization|org/i.test(err.body ?? '')) {
        throw new IngestError(
          'EI_INFLUX_BUCKET_MISSING',
          `InfluxDB organisation "${this.opts.org}" not found: ${err.body}`,
        );
      }
      if (err instanceof HttpError && (err.statusCode === 404 || err.statusCode === 400)) {
        // Servers that speak only the write API (VictoriaMetrics, some proxies) have no buckets API.
        return;
      }
      throw new IngestError(
        'EI_INFLUX_UNREACHABLE',
        `InfluxDB at ${redactUrl(this.opts.url)} did not answer: ${redactText((err as Error).message)}`,
        {
          cause: err,
        },
      );
    }
    if (Array.isArray(res?.buckets) && res.buckets.length === 0) {
      throw new IngestError(
        'EI_INFLUX_BUCKET_MISSING',
        `InfluxDB bucket "${this.opts.bucket}" does not exist in org "${this.opts.org}": create it (influx bucket create -n ${this.opts.bucket} -o ${this.opts.org}) or set INFLUX_BUCKET`,
      );
    }
  }

  async write(body: Buffer): Promise<WriteResult> {
    try {
      await this.client.transport.request(this.writePath, body.toString('utf8'), {
        method: 'POST',
        headers: { 'content-type': 'text/plain; charset=utf-8' },
      });
      return { kind: 'ok' };
    } catch (err) {
      if (err instanceof HttpError) {
        const retryAfter = err.headers?.['retry-after'];
        const result = classifyStatus(err.statusCode, (err.body ?? err.message).slice(0, 1000), null);
        if (result.kind === 'retry') {
          return {
            ...result,
            retryAfterMs: parseRetryAfter(Array.isArray(retryAfter) ? retryAfter[0] : retryAfter),
          };
        }
        if (result.kind === 'reject' && err.statusCode === 404) {
          // bucket or org removed while we run: not the lines' fault
          return { kind: 'retry', status: 404, message: result.message };
        }
        return result;
      }
      return { kind: 'retry', message: networkMessage(err) };
    }
  }

  ping(): Promise<void> {
    return influxPingOk(this.opts.url, this.opts.timeoutMs);
  }

  async close(): Promise<void> {}
}
