import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { runBackup, runRestore } from '../../src/backup/run.js';
import { loadConfig } from '../../src/config/load.js';
import { IngestError } from '../../src/errors.js';
import { migrate } from '../../src/metadata/migrations.js';
import { type DaemonProcess, metricValue, spawnDaemon } from '../helpers/daemon.js';
import {
  eventually,
  freePort,
  freshDatabase,
  type RestartableService,
  startRedis,
  tempDir,
} from '../helpers/services.js';

// Backups to S3 (a real S3-API server: the s3rver package, started as its own
// process; MinIO itself is not installable here), backup.keep pruning there,
// scheduled backups inside the daemon (backup.cron), and a failing part
// making the run fail.

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'energy-ingest.js');

function cli(args: string[], env: Record<string, string>): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(
      'node',
      [BIN, ...args],
      {
        env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...env },
        timeout: 45_000,
      },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` }),
    );
  });
}

let s3rver: ChildProcess;
let s3Url: string;
let s3: S3Client;
let redis: RestartableService;
let redis2: RestartableService;
const daemons: DaemonProcess[] = [];

beforeAll(async () => {
  const port = await freePort();
  s3rver = spawn(
    'node',
    [
      join(ROOT, 'node_modules', 's3rver', 'bin', 's3rver.js'),
      '-d',
      tempDir('s3rver'),
      '-a',
      '127.0.0.1',
      '-p',
      String(port),
      '--silent',
      '--configure-bucket',
      'backups',
    ],
    { stdio: 'ignore' },
  );
  s3Url = `http://127.0.0.1:${port}`;
  s3 = new S3Client({
    endpoint: s3Url,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
  });
  [redis, redis2] = await Promise.all([startRedis(), startRedis()]);
  await eventually(
    async () =>
      (await s3.send(new ListObjectsV2Command({ Bucket: 'backups' }))).$metadata.httpStatusCode === 200,
    20_000,
    's3rver up',
  );
}, 60_000);

afterAll(async () => {
  for (const d of daemons) if (d.child.exitCode === null) d.child.kill('SIGKILL');
  if (s3rver?.pid && s3rver.exitCode === null) process.kill(s3rver.pid, 'SIGKILL');
  s3?.destroy();
  await Promise.all([redis?.stop(), redis2?.stop()]);
});

const s3Env = () => ({ S3_ENDPOINT: s3Url, S3_ACCESS_KEY: 'S3RVER', S3_SECRET_KEY: 'S3RVER' });

async function setsInBucket(prefix: string): Promise<Map<string, string[]>> {
  const r = await s3.send(new ListObjectsV2Command({ Bucket: 'backups', Prefix: prefix }));
  const sets = new Map<string, string[]>();
  for (const o of r.Contents ?? []) {
    const [name, ...rest] = o.Key!.slice(prefix.length).split('/');
    sets.set(name!, [...(sets.get(name!) ?? []), rest.join('/')]);
  }
  return sets;
}

const LINES = [
  'sensor_readings,building_id=building_001,floor=1,room=a\\ b,sensor_type=power value=1.5,unit="W",status="normal" 1764460800000',
  'sensor_readings,building_id=building_001,floor=1,room=a\\ b,sensor_type=power value=2,unit="W",status="x\\ny" 1764460801000',
];

describe('S3 (s3rver): round trip, keep, corrupted object', () => {
  it('backs up PostgreSQL, Redis, the file sink and the state to s3://, prunes to backup.keep, restores exactly', async () => {
    const src = await freshDatabase(inject('postgresUrl'), 'backup_s3_src');
    await migrate(src);
    const c = new pg.Client({ connectionString: src });
    await c.connect();
    await c.query("INSERT INTO buildings (name, address, total_area) VALUES ('건물S', '부산', 10.25)");
    await c.end();
    const r = new Redis(redis.url);
    await r.set('session:abc', '{"username":"kim"}', 'EX', 600);
    await r.xadd('alerts:stream', '1-1', 'event', '{"id":"e1"}');
    r.disconnect();
    const dataDir = tempDir('backup-s3-src');
    mkdirSync(join(dataDir, 'readings'), { recursive: true });
    writeFileSync(join(dataDir, 'readings', '2025-11-30.lp'), `${LINES.join('\n')}\n`);
    const env = {
      ...s3Env(),
      DATABASE_URL: src,
      REDIS_URL: redis.url,
      DATA_DIR: dataDir,
      EI_BACKUP_KEEP: '1',
    };

    const names: string[] = [];
    const t0 = Date.now();
    // the first through the CLI, the second in process (one slow process start less on a busy machine)
    const b = await cli(['backup', '--to', 's3://backups/site-a/'], env);
    expect(b.code, b.out).toBe(0);
    names.push(/backup set (\S+) written/.exec(b.out)![1]!);
    const second = await runBackup(loadConfig({ env }), 's3://backups/site-a/', () => {});
    names.push(second.name);
    expect(second.pruned).toEqual([names[0]]);
    expect(names[1]!).not.toBe(names[0]);
    const sets = await setsInBucket('site-a/');
    // backup.keep 1: the older set is gone, the newest is whole
    expect([...sets.keys()]).toEqual([names[1]]);
    for (const files of sets.values()) {
      expect(files.sort()).toEqual(
        [
          'influx/sensor_readings.lp.gz',
          'manifest.json',
          'postgres/alert_rules.jsonl.gz',
          'postgres/buildings.jsonl.gz',
          'postgres/energy_ingest_rollup_offsets.jsonl.gz',
          'postgres/mqtt_devices.jsonl.gz',
          'postgres/sensor_data.jsonl.gz',
          'postgres/sensor_rollups_hourly.jsonl.gz',
          'postgres/tenants.jsonl.gz',
          'postgres/users.jsonl.gz',
          'redis/keys.jsonl.gz',
        ].sort(),
      );
    }

    const dst = await freshDatabase(inject('postgresUrl'), 'backup_s3_dst');
    const dstData = tempDir('backup-s3-dst');
    const dstEnv = { ...s3Env(), DATABASE_URL: dst, REDIS_URL: redis2.url, DATA_DIR: dstData };
    const rr = await cli(['restore', '--from', 's3://backups/site-a'], dstEnv);
    expect(rr.code, rr.out).toBe(0);
    expect(rr.out).toContain(`restored ${names[1]}`);
    const d = new pg.Client({ connectionString: dst });
    await d.connect();
    const rows = await d.query('SELECT id, name, address, total_area::text FROM buildings');
    await d.end();
    expect(rows.rows).toEqual([{ id: 1, name: '건물S', address: '부산', total_area: '10.25' }]);
    const r2 = new Redis(redis2.url);
    expect(await r2.get('session:abc')).toBe('{"username":"kim"}');
    // the expiry instant is kept: TTL 600 s at backup time minus the time since
    const ttl = await r2.ttl('session:abc');
    expect(ttl).toBeLessThanOrEqual(600);
    expect(ttl).toBeGreaterThanOrEqual(600 - Math.ceil((Date.now() - t0) / 1000) - 1);
    expect(await r2.xrange('alerts:stream', '-', '+')).toEqual([['1-1', ['event', '{"id":"e1"}']]]);
    r2.disconnect();
    expect(readFileSync(join(dstData, 'readings', '2025-11-30.lp'), 'utf8')).toBe(`${LINES.join('\n')}\n`);

    // one set named in the URL; and again: idempotent (the file sink gains nothing twice)
    const again = await runRestore(loadConfig({ env: dstEnv }), `s3://backups/site-a/${names[1]}`, () => {});
    expect(again.name).toBe(names[1]);
    expect(readFileSync(join(dstData, 'readings', '2025-11-30.lp'), 'utf8')).toBe(`${LINES.join('\n')}\n`);

    // an object changed in the bucket: refused, nothing restored (in process: one CLI start less)
    await s3.send(
      new PutObjectCommand({
        Bucket: 'backups',
        Key: `site-a/${names[1]}/redis/keys.jsonl.gz`,
        Body: 'garbage',
      }),
    );
    const emptyData = tempDir('backup-s3-refused');
    const cfg = loadConfig({ env: { ...dstEnv, DATA_DIR: emptyData } });
    const err = await runRestore(cfg, 's3://backups/site-a', () => {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IngestError);
    expect((err as IngestError).code).toBe('EI_BACKUP_CORRUPT');
    expect((err as Error).message).toMatch(/redis\/keys\.jsonl\.gz: 7 bytes, manifest says \d+/);
    expect(readdirSync(emptyData)).toEqual([]);

    // a bucket that does not exist: a coded error naming the target, not a stack trace
    const nobucket = await runBackup(loadConfig({ env }), 's3://no-such-bucket/x', () => {}).catch(
      (e: unknown) => e,
    );
    expect((nobucket as IngestError).code).toBe('EI_BACKUP_FAILED');
    expect((nobucket as Error).message).toMatch(/^s3:\/\/no-such-bucket\/x\/: NoSuchBucket/);
  }, 120_000);
});

describe('scheduled backups and failures', () => {
  it('backup.cron runs backups inside the ingesting daemon and keeps backup.keep sets', async () => {
    const target = tempDir('backup-cron');
    const d = await spawnDaemon({
      DATA_DIR: tempDir('backup-cron-data'),
      EI_BACKUP_CRON: '*/2 * * * * *',
      EI_BACKUP_TO: target,
      EI_BACKUP_KEEP: '2',
    });
    daemons.push(d);
    await eventually(
      async () => metricValue(await d.metrics(), 'energy_ingest_backups_total{result="ok"}') >= 3,
      40_000,
      'three scheduled backups',
    );
    expect(metricValue(await d.metrics(), 'energy_ingest_backups_total{result="failed"}')).toBe(0);
    d.child.kill('SIGTERM');
    expect((await d.exited).code).toBe(0);
    const complete = readdirSync(target).filter((n) => {
      try {
        return JSON.parse(readFileSync(join(target, n, 'manifest.json'), 'utf8')).complete === true;
      } catch {
        return false;
      }
    });
    expect(complete).toHaveLength(2);
  }, 60_000);

  it('a part that fails makes the run exit non-zero; its set is marked incomplete and never restored', async () => {
    const target = tempDir('backup-fail');
    const dead = await freePort();
    const b = await cli(['backup', '--to', target], {
      DATA_DIR: tempDir('backup-fail-data'),
      DATABASE_URL: `postgres://postgres@127.0.0.1:${dead}/postgres`,
    });
    expect(b.code).toBe(1);
    expect(b.out).toMatch(/postgres: FAILED: PostgreSQL did not answer/);
    expect(b.out).toMatch(/EI_BACKUP_FAILED: backup \S+ at .* is incomplete: postgres:/);
    const [name] = readdirSync(target);
    const m = JSON.parse(readFileSync(join(target, name!, 'manifest.json'), 'utf8'));
    expect(m.complete).toBe(false);
    expect(m.parts.postgres.status).toBe('failed');
    expect(m.parts.influx.status).toBe('ok');
    const [r, r2] = await Promise.all([
      cli(['restore', '--from', target], { DATA_DIR: tempDir('backup-fail-dst') }),
      cli(['restore', '--from', join(target, name!)], { DATA_DIR: tempDir('backup-fail-dst') }),
    ]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/no complete backup set at/);
    expect(r2.code).toBe(1);
    expect(r2.out).toMatch(/is incomplete \(failed: postgres/);
  }, 60_000);

  it('usage errors exit 2', async () => {
    const [a, b] = await Promise.all([
      cli(['backup', '--to', 'ftp://host/x'], {}),
      cli(['restore', '--from', '/x', '--parts', 'influx,bogus'], {}),
    ]);
    expect([a.code, b.code]).toEqual([2, 2]);
    expect(a.out).toMatch(/a backup target is a directory or s3:\/\/BUCKET\/PREFIX/);
    expect(b.out).toMatch(/option --parts must list some of postgres, influx, redis, state/);
  }, 30_000);
});
