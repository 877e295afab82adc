import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import {
  DEFAULT_CONFIG_FILE,
  deepMerge,
  loadConfig,
  parseBytes,
  redactedConfig,
} from '../../src/config/load.js';
import { envName, fields } from '../../src/config/schema.js';
import { IngestError } from '../../src/errors.js';

function file(yaml: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'ei-cfg-'));
  const p = join(dir, 'c.yaml');
  writeFileSync(p, yaml);
  return p;
}

describe('configuration', () => {
  it('shipped defaults match the contract', () => {
    const c = loadConfig({ env: {} });
    expect(c.mqtt).toMatchObject({ host: '127.0.0.1', port: 1883, maxPayloadBytes: 65536 });
    expect(c.http).toMatchObject({ host: '127.0.0.1', port: 8080 });
    expect(c.influx).toMatchObject({
      api: 'auto',
      org: 'energy_org',
      bucket: 'energy_data',
      database: 'energy_data',
    });
    expect(c.influx.url).toBeUndefined();
    expect(c.pipeline).toMatchObject({
      batchSize: 5000,
      flushIntervalMs: 1000,
      maxInflightBatches: 4,
      maxLogBytes: 1024 ** 3,
      durability: 'fsync',
      shutdownTimeoutMs: 10000,
    });
    expect(c.ingest).toEqual({ maxFutureSkewS: 300, maxAgeS: 604800, acceptUnknownBuildings: false });
    expect(c.log.level).toBe('info');
    expect(c.auth.allowAnonymous).toBe(true);
    expect(c.buildings).toEqual([]);
    expect(Object.isFrozen(c) && Object.isFrozen(c.pipeline)).toBe(true);
  });

  it('env vars override the file, with the contract names', () => {
    const c = loadConfig({
      env: {
        MQTT_PORT: '2883',
        INFLUX_URL: 'http://db:8086',
        INFLUX_BUCKET: 'b',
        DATA_DIR: '/var/lib/ei',
        LOG_LEVEL: 'debug',
        ALLOW_ANONYMOUS: 'false',
      },
    });
    expect(c.mqtt.port).toBe(2883);
    expect(c.influx.url).toBe('http://db:8086');
    expect(c.influx.database).toBe('b');
    expect(c.dataDir).toBe('/var/lib/ei');
    expect(c.log.level).toBe('debug');
    expect(c.auth).toEqual({
      allowAnonymous: false,
      allowAnonymousExplicit: true,
      redisSessions: false,
      maxFailedLoginsPerMinute: 10,
      maxFailedLoginsPerUserPerMinute: 10,
      failedLoginBurst: 3,
      maxTrackedLogins: 100000,
      maxConcurrentKeyDerivations: 1,
      maxQueuedKeyDerivations: 8,
      loginLookupPoolSize: 2,
      loginLookupTimeoutMs: 2000,
      loginLookupMaxWaiting: 16,
      unknownUserCacheMs: 30000,
      unknownUserCacheMax: 10000,
      recheckIntervalSeconds: 30,
    });
  });

  it('derives env names for keys the contract does not name', () => {
    const names = Object.fromEntries([...fields()].map(([p, f]) => [p, envName(p, f)]));
    expect(names['pipeline.batchSize']).toBe('EI_PIPELINE_BATCH_SIZE');
    expect(names['redis.url']).toBe('REDIS_URL');
    expect(names['postgres.url']).toBe('DATABASE_URL');
    expect(loadConfig({ env: { EI_PIPELINE_BATCH_SIZE: '10' } }).pipeline.batchSize).toBe(10);
  });

  it('--config wins over ENERGY_INGEST_CONFIG, and lists buildings', () => {
    const a = file('mqtt: { port: 1111 }\n');
    const b = file(
      'mqtt: { port: 2222 }\nbuildings:\n  - { id: 1, name: 건물A, address: 서울시 강남구 }\n  - { id: 1234, name: B }\n',
    );
    expect(loadConfig({ configPath: a, env: { ENERGY_INGEST_CONFIG: b } }).mqtt.port).toBe(1111);
    const c = loadConfig({ env: { ENERGY_INGEST_CONFIG: b } });
    expect(c.mqtt.port).toBe(2222);
    expect(c.buildings.map((x) => x.key)).toEqual(['building_001', 'building_1234']);
  });

  it('reports every problem at once, each naming its key', () => {
    const p = file(
      'mqtt: { port: 99999, bogus: 1 }\npipeline: { durability: maybe, batchSize: 0 }\nnope: 1\n',
    );
    let err: unknown;
    try {
      loadConfig({ configPath: p, env: { INFLUX_URL: 'not a url' } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(IngestError);
    const msg = (err as IngestError).message;
    expect((err as IngestError).code).toBe('EI_CONFIG_INVALID');
    for (const key of [
      'mqtt.port',
      'mqtt.bogus',
      'pipeline.durability',
      'pipeline.batchSize',
      'nope',
      'influx.url (env INFLUX_URL)',
    ]) {
      expect(msg).toContain(key);
    }
  });

  it('auth.redisSessions without REDIS_URL is reported with the other problems, not dropped', () => {
    const problems = (env: Record<string, string>) => {
      try {
        loadConfig({ configPath: file('mqtt: { port: 99999 }\n'), env });
      } catch (e) {
        return (e as IngestError).message;
      }
      return 'no error';
    };
    const msg = problems({ EI_AUTH_REDIS_SESSIONS: 'true' });
    expect(msg).toContain('mqtt.port');
    expect(msg).toMatch(/auth\.redisSessions: needs REDIS_URL/);
    // alone, it is an error too
    expect(() => loadConfig({ configPath: file('auth: { redisSessions: true }\n'), env: {} })).toThrow(
      /auth\.redisSessions: needs REDIS_URL/,
    );
    expect(problems({ EI_AUTH_REDIS_SESSIONS: 'true', REDIS_URL: 'redis://127.0.0.1:6379' })).not.toContain(
      'redisSessions',
    );
  });

  it('alert rules: camelCase or snake_case, and a rule that can never raise is a configuration error', () => {
    const ok = loadConfig({
      configPath: file(
        'alerts:\n  rules:\n    - { id: hot, sensorType: temperature, above: 30, forSeconds: 60 }\n',
      ),
      env: {},
    });
    expect(ok.alerts.rules).toEqual([
      expect.objectContaining({ id: 'hot', sensorType: 'temperature', above: 30, forSeconds: 60 }),
    ]);
    expect(() =>
      loadConfig({
        configPath: file(
          'alerts:\n  rules:\n    - { id: a, sensor_type: power }\n    - { id: b, sensor_type: power, above: 1, hysteresis: -2 }\n',
        ),
        env: {},
      }),
    ).toThrow(
      /alerts\.rules\[0\]: needs above, below or offline_after_seconds[\s\S]*alerts\.rules\[1\]\.hysteresis: must not be below 0/,
    );
  });

  it('unreadable files are a clear error', () => {
    expect(() => loadConfig({ configPath: '/nonexistent/x.yaml', env: {} })).toThrow(
      /cannot read config file/,
    );
    expect(() => loadConfig({ configPath: file('a: [1,\n'), env: {} })).toThrow(/not valid YAML/);
  });

  it('anonymous access defaults to false once a listener leaves loopback', () => {
    const pg = { DATABASE_URL: 'postgres://u:p@db/energy' };
    expect(loadConfig({ env: { MQTT_HOST: '0.0.0.0', ...pg } }).auth.allowAnonymous).toBe(false);
    expect(loadConfig({ env: { HTTP_HOST: '192.0.2.1', ...pg } }).auth.allowAnonymous).toBe(false);
    expect(loadConfig({ env: { MQTT_HOST: '::1' } }).auth.allowAnonymous).toBe(true);
    expect(loadConfig({ env: { MQTT_HOST: '0.0.0.0', ALLOW_ANONYMOUS: 'true' } }).auth).toMatchObject({
      allowAnonymous: true,
      allowAnonymousExplicit: true,
      redisSessions: false,
    });
  });

  it('a non-loopback listener without credentials or explicit anonymous access is an error saying how to fix it', () => {
    expect(() => loadConfig({ env: { MQTT_HOST: '0.0.0.0' } })).toThrow(
      /auth\.allowAnonymous: .*0\.0\.0\.0.*DATABASE_URL.*ALLOW_ANONYMOUS=true/,
    );
  });

  it('cross-field checks are reported together with every other problem (issue 13.3)', () => {
    let msg = 'no error';
    try {
      loadConfig({
        configPath: file('mqtt: { port: 99999 }\n'),
        env: { MQTT_HOST: '0.0.0.0', EI_PIPELINE_RETRY_MAX_MS: '10', EI_PIPELINE_RETRY_MIN_MS: '100' },
      });
    } catch (e) {
      msg = (e as IngestError).message;
    }
    expect(msg).toContain('mqtt.port');
    expect(msg).toContain('pipeline.retryMaxMs');
    expect(msg).toMatch(/auth\.allowAnonymous: .*need credentials/);
  });

  it('the shipped config/default.yaml repeats no default: the schema is the one place a default is written', () => {
    const shipped = parseYaml(readFileSync(DEFAULT_CONFIG_FILE, 'utf8')) as Record<string, unknown> | null;
    const repeated: string[] = [];
    for (const [path, field] of fields()) {
      let v: unknown = shipped ?? {};
      for (const k of path.split('.')) v = (v as Record<string, unknown> | undefined)?.[k];
      if (v !== undefined && field.default !== undefined && String(v) === String(field.default))
        repeated.push(path);
    }
    expect(repeated).toEqual([]);
    // and the daemon's zero-config defaults still come out of the schema
    const cfg = loadConfig({ env: {} });
    expect(cfg.mqtt.port).toBe(1883);
    expect(cfg.pipeline.batchSize).toBe(5000);
  });

  it('redacts secrets', () => {
    const c = loadConfig({
      env: {
        INFLUX_TOKEN: 'tok-secret',
        INFLUX_PASSWORD: 'pw-secret',
        DATABASE_URL: 'postgres://u:pg-secret@h/db',
        REDIS_URL: 'redis://:rd-secret@h:6379',
      },
    });
    const text = JSON.stringify(redactedConfig(c));
    for (const s of ['tok-secret', 'pw-secret', 'pg-secret', 'rd-secret']) expect(text).not.toContain(s);
    expect(text).toContain('postgres://u:***@h/db');
  });

  it('merging local.yaml keeps a "__proto__" key as a key (reported unknown), not a prototype (issue 12 item 6)', () => {
    const over = parseYaml('__proto__:\n  mqtt:\n    port: 1\nmqtt:\n  port: 5\n') as Record<string, unknown>;
    const merged = deepMerge({ mqtt: { port: 1883 } }, over);
    expect(Object.keys(merged).sort()).toEqual(['__proto__', 'mqtt']);
    expect(Object.getPrototypeOf(merged)).toBeNull();
    expect(merged.mqtt).toEqual({ port: 5 });
  });

  it('parses sizes', () => {
    expect(parseBytes('1GiB')).toBe(1024 ** 3);
    expect(parseBytes('64 KiB')).toBe(65536);
    expect(parseBytes(5)).toBe(5);
    expect(parseBytes('lots')).toBeUndefined();
  });
});
