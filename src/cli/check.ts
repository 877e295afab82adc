import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import mqtt from 'mqtt';
import pg from 'pg';
import type { Config } from '../config/types.js';
import { listen } from '../listen.js';
import { redactText, redactUrl } from '../redact.js';
import { createSink } from '../sinks/detect.js';
import { upstreamClientIds, upstreamTls } from '../upstream/upstream.js';

interface CheckLine {
  readonly service: string;
  readonly target: string;
  run(): Promise<string | undefined>;
}

/** One line per configured service with status and latency; 0 only when all of them answer. */
export async function runCheck(cfg: Config, print: (line: string) => void): Promise<number> {
  const checks: CheckLine[] = [];
  if (cfg.mqtt.enabled)
    checks.push({
      service: 'mqtt',
      target: `${cfg.mqtt.host}:${cfg.mqtt.port}`,
      async run() {
        // Can the listener bind? (A running daemon on the same port makes this fail, which is the point.)
        const server = createServer();
        await listen(server, cfg.mqtt.host, cfg.mqtt.port, 'MQTT');
        await new Promise<void>((resolve) => server.close(() => resolve()));
        return 'bind ok';
      },
    });
  const upstream = cfg.upstream;
  if (upstream.url) {
    const url = upstream.url;
    checks.push({
      service: 'upstream',
      target: redactUrl(url),
      async run() {
        // CONNECT and CONNACK only, with a client id of its own and a clean session: the daemon's
        // persistent sessions and its share group are left alone (a subscriber here would take messages)
        const [id] = upstreamClientIds(upstream);
        const client = await mqtt.connectAsync(url, {
          clientId: `${id}-check`,
          protocolVersion: upstream.protocolVersion,
          clean: true,
          username: upstream.username,
          password: upstream.password,
          reconnectPeriod: 0,
          connectTimeout: 5000,
          ...upstreamTls(upstream),
        });
        await client.endAsync();
        return `CONNACK ok, MQTT ${upstream.protocolVersion === 5 ? '5' : '3.1.1'}`;
      },
    });
  }
  if (cfg.influx.url) {
    checks.push({
      service: 'influxdb',
      target: redactUrl(cfg.influx.url),
      async run() {
        const sink = await createSink(cfg.influx, cfg.dataDir);
        await sink.connect();
        await sink.ping();
        return sink.name;
      },
    });
  } else {
    checks.push({
      service: 'file-sink',
      target: cfg.dataDir,
      async run() {
        const sink = await createSink(cfg.influx, cfg.dataDir);
        await sink.ping();
        return 'writable';
      },
    });
  }
  const pgUrl = cfg.postgres.url;
  if (pgUrl) {
    checks.push({
      service: 'postgres',
      target: redactUrl(pgUrl),
      async run() {
        const client = new pg.Client({ connectionString: pgUrl, connectionTimeoutMillis: 5000 });
        try {
          await client.connect();
          const t = await client.query<{ t: string | null }>(
            "SELECT to_regclass('energy_ingest_migrations') AS t",
          );
          const v = t.rows[0]?.t
            ? (
                await client.query<{ v: number | null }>(
                  'SELECT max(version) AS v FROM energy_ingest_migrations',
                )
              ).rows[0]?.v
            : null;
          return v ? `schema version ${v}` : 'schema not migrated: run energy-ingest migrate';
        } finally {
          await client.end().catch(() => {});
        }
      },
    });
  }
  const redisUrl = cfg.redis.url;
  if (redisUrl) {
    checks.push({
      service: 'redis',
      target: redactUrl(redisUrl),
      async run() {
        const redis = new Redis(redisUrl, {
          lazyConnect: true,
          maxRetriesPerRequest: 0,
          enableOfflineQueue: false,
          retryStrategy: () => null,
          connectTimeout: 5000,
        });
        redis.on('error', () => {});
        try {
          await redis.connect();
          return `PING ${await redis.ping()}`;
        } finally {
          redis.disconnect();
        }
      },
    });
  }
  let failed = 0;
  for (const c of checks) {
    const t0 = performance.now();
    try {
      const note = await c.run();
      print(
        `ok    ${c.service.padEnd(9)} ${c.target} ${Math.round(performance.now() - t0)} ms${note ? ` (${note})` : ''}`,
      );
    } catch (err) {
      failed++;
      print(
        `FAIL  ${c.service.padEnd(9)} ${c.target} ${Math.round(performance.now() - t0)} ms: ${redactText((err as Error).message)}`,
      );
    }
  }
  return failed ? 1 : 0;
}
