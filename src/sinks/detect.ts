import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/types.js';

/** the sink's own config section (contract section 2) */
export type InfluxConfig = Config['influx'];

import { IngestError } from '../errors.js';
import { redactText, redactUrl } from '../redact.js';
import { checkDataDir, readFileNoFollow, writeFileAtomicPrivate } from '../safeFs.js';
import { FileSink } from './file.js';
import { InfluxV1Sink } from './influxV1.js';
import { InfluxV2Sink } from './influxV2.js';
import { influxPing } from './ping.js';
import type { Sink } from './sink.js';

export interface ServerInfo {
  readonly api: 'v1' | 'v2';
  /** X-Influxdb-Version, or '' when the server sent none */
  readonly version: string;
}

/**
 * `influx.api: auto`: GET /ping and read the version header. InfluxDB 1.x says
 * "1.x.y"; 2.x says "v2.x.y" or "2.x.y". Without a header (VictoriaMetrics and
 * other compatible servers) a configured token means v2, else v1.
 */
export async function probeInflux(
  url: string,
  token: string | undefined,
  timeoutMs: number,
): Promise<ServerInfo> {
  let version: string;
  try {
    ({ version } = await influxPing(url, timeoutMs));
  } catch (err) {
    throw new IngestError(
      'EI_INFLUX_UNREACHABLE',
      `InfluxDB at ${redactUrl(url)} did not answer /ping: ${redactText((err as Error).message)}`,
      {
        cause: err,
      },
    );
  }
  if (/^v?1\./.test(version)) return { api: 'v1', version };
  if (/^v?[2-9]\./.test(version)) return { api: 'v2', version };
  return { api: token ? 'v2' : 'v1', version };
}

/**
 * InfluxDB 1.x keeps backslashes in tags literally (see ingest/lineProtocol.ts;
 * verified against 1.6). Unknown servers get the documented 2.x escaping.
 */
function legacyBackslashes(version: string): boolean {
  return /^v?1\./.test(version);
}

/**
 * Raw line breaks inside quoted strings only for a server whose version header
 * says it is InfluxDB (its parser reads them as part of the string); anything
 * else (VictoriaMetrics sends no header) may cut the line there.
 */
function newlinesFor(version: string): 'raw' | 'escape' {
  return /^v?\d+\./.test(version) ? 'raw' : 'escape';
}

/**
 * What the last successful probe found, kept under dataDir: a daemon that
 * restarts while InfluxDB is down must still start and take readings into its
 * durable log, and it must encode them exactly as that server will read them.
 */
function serverCachePath(dataDir: string): string {
  return join(dataDir, 'influx-server.json');
}

async function probeOrRemember(
  influx: InfluxConfig,
  dataDir: string,
  url: string,
  log?: Logger,
): Promise<ServerInfo> {
  const cache = serverCachePath(dataDir);
  try {
    const info = await probeInflux(url, influx.token, influx.timeoutMs);
    await checkDataDir(dataDir);
    await writeFileAtomicPrivate(cache, `${JSON.stringify({ url, ...info })}\n`);
    return info;
  } catch (err) {
    if (!(err instanceof IngestError) || err.code !== 'EI_INFLUX_UNREACHABLE') throw err;
    const remembered = await readFileNoFollow(cache, 'utf8')
      .then((t) => JSON.parse(t) as ServerInfo & { url: string })
      .catch(() => undefined);
    if (remembered?.url === url) {
      log?.warn(
        { api: remembered.api, version: remembered.version },
        `${err.message}; using the server last seen at this URL, writes will retry until it answers`,
      );
      return { api: remembered.api, version: remembered.version };
    }
    if (influx.api !== 'auto') {
      // v1 without a known version: assume InfluxDB 1.x, the usual server behind /write
      const assumed: ServerInfo = {
        api: influx.api,
        version: influx.api === 'v1' ? '1.x (assumed)' : '',
      };
      log?.warn(
        { api: assumed.api },
        `${err.message}; starting with the configured API, writes will retry until it answers`,
      );
      return assumed;
    }
    throw new IngestError(
      'EI_INFLUX_UNREACHABLE',
      `${err.message}; with INFLUX_API=auto the server must answer once so its API can be detected (or set INFLUX_API=v1|v2)`,
      { cause: err },
    );
  }
}

/** The reading sink for `influx` (contract section 5): the file sink under dataDir when no URL is set. */
export async function createSink(influx: InfluxConfig, dataDir: string, log?: Logger): Promise<Sink> {
  const url = influx.url;
  if (!url) return new FileSink(dataDir);
  const timeoutMs = influx.timeoutMs;
  let api = influx.api;
  let version = '';
  if (api === 'auto' || api === 'v1') {
    const info = await probeOrRemember(influx, dataDir, url, log);
    version = info.version;
    if (api === 'auto') api = info.api;
  }
  if (api === 'v2') {
    return new InfluxV2Sink({
      url,
      token: influx.token,
      org: influx.org,
      bucket: influx.bucket,
      timeoutMs,
      newlines: newlinesFor(version),
    });
  }
  return new InfluxV1Sink({
    url,
    database: influx.database,
    username: influx.username,
    password: influx.password,
    timeoutMs,
    backslashMode: legacyBackslashes(version) ? 'literal' : 'escape',
    newlines: newlinesFor(version),
  });
}
