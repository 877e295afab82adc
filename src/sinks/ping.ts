import { redactText } from '../redact.js';

// The one InfluxDB /ping round trip: the v1 and v2 sinks' health probe and
// `influx.api: auto` detection (which reads the version header) share it.

export interface PingAnswer {
  readonly status: number;
  /** X-Influxdb-Version, or '' when the server sent none (VictoriaMetrics) */
  readonly version: string;
}

/** GET {url}/ping; throws on a network error or timeout (message with any URL password redacted). */
export async function influxPing(url: string, timeoutMs: number): Promise<PingAnswer> {
  try {
    const res = await fetch(`${url.replace(/\/+$/, '')}/ping`, { signal: AbortSignal.timeout(timeoutMs) });
    await res.body?.cancel();
    return { status: res.status, version: (res.headers.get('x-influxdb-version') ?? '').trim() };
  } catch (err) {
    // fetch repeats the whole URL, user:password@ included, in its errors
    throw new Error(redactText((err as Error).message), { cause: err });
  }
}

/** a ping that must answer 2xx (the sinks' health probe) */
export async function influxPingOk(url: string, timeoutMs: number): Promise<void> {
  const { status } = await influxPing(url, timeoutMs);
  if (status < 200 || status >= 300) throw new Error(`/ping answered ${status}`);
}
