import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { Redis } from 'ioredis';
import mqtt from 'mqtt';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { migrate } from '../../src/metadata/migrations.js';
import { type DaemonProcess, spawnDaemon } from '../helpers/daemon.js';
import {
  eventually,
  freshDatabase,
  influxQuery,
  type RestartableService,
  startInflux1,
  startPostgres,
  startRedis,
  tempDir,
  victoriaExport,
} from '../helpers/services.js';

// The restore drill (contract section 18): a daemon ingests readings from a
// real MQTT client, a backup is taken WHILE it ingests, the daemon stops, and
// the set is restored into FRESH servers (new PostgreSQL, InfluxDB 1.x and
// Redis processes). Everything is compared exactly: the system's tables row
// by row, every reading of sensor_readings before the backup's cut, every
// backed-up Redis key with its value and TTL, the daemon's state files. A
// second restore must leave the same data.

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'energy-ingest.js');

function cli(
  args: string[],
  env: Record<string, string>,
  timeout = 45_000,
): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(
      'node',
      [BIN, ...args],
      { env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...env }, timeout },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` }),
    );
  });
}

const TABLES = [
  'users',
  'buildings',
  'tenants',
  'sensor_data',
  'alert_rules',
  'mqtt_devices',
  'sensor_rollups_hourly',
  'energy_ingest_rollup_offsets',
];
// what the daemon does not change while it ingests
const STATIC_TABLES = TABLES.slice(0, 6);
const PATTERNS = [
  'alerts:stream',
  'alerts:active:*',
  'notification:*',
  'cache:building_list',
  'cache:building:*',
  'cache:latest:*',
  'forecast:*',
  'session:*',
];

async function tableRows(url: string, table: string): Promise<string[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const r = await c.query<{ j: string }>(`SELECT row_to_json(t)::text AS j FROM "${table}" t`);
    return r.rows.map((x) => x.j).sort();
  } finally {
    await c.end();
  }
}

function gzLines(path: string): string[] {
  return gunzipSync(readFileSync(path)).toString('utf8').split('\n').filter(Boolean);
}

async function readings(url: string, db: string, where = ''): Promise<string[]> {
  const rows = await influxQuery(url, db, `SELECT * FROM sensor_readings ${where}`);
  return rows
    .map((r) => JSON.stringify(Object.fromEntries(Object.entries(r).sort(([a], [b]) => (a < b ? -1 : 1)))))
    .sort();
}

type Enc = string | { b64: string };
const enc = (b: Buffer): Enc => {
  const s = b.toString('utf8');
  return Buffer.from(s, 'utf8').equals(b) ? s : { b64: b.toString('base64') };
};

/** every key of the backup's patterns: type, value (as the backup file writes it), pttl */
async function redisKeys(url: string): Promise<Map<string, { type: string; value: unknown; pttl: number }>> {
  const r = new Redis(url);
  const out = new Map<string, { type: string; value: unknown; pttl: number }>();
  try {
    const keys = new Set<string>();
    for (const p of PATTERNS) for (const k of await r.keys(p)) keys.add(k);
    for (const key of [...keys].sort()) {
      const type = await r.type(key);
      const pttl = await r.pttl(key);
      let value: unknown;
      if (type === 'string') value = enc((await r.getBuffer(key))!);
      else if (type === 'hash')
        value = Object.entries(await r.hgetallBuffer(key))
          .map(([f, v]) => [f, enc(v)])
          .sort();
      else if (type === 'stream')
        value = ((await r.xrangeBuffer(key, '-', '+')) as Array<[Buffer, Buffer[]]>).map(([id, kv]) => [
          id.toString(),
          kv.map(enc),
        ]);
      else value = (await r.lrangeBuffer(key, 0, -1)).map(enc);
      out.set(key, { type, value, pttl });
    }
  } finally {
    r.disconnect();
  }
  return out;
}

/** the keys of a set's redis file, values in the same shape as redisKeys() */
function backupKeys(path: string): Map<string, { type: string; value: unknown; expire_at: number | null }> {
  const out = new Map<string, { type: string; value: unknown; expire_at: number | null }>();
  for (const line of gzLines(path)) {
    const k = JSON.parse(line) as {
      key: string;
      type: string;
      value: unknown;
      expire_at: number | null;
      first: boolean;
    };
    const value = k.type === 'hash' ? [...(k.value as Array<[string, Enc]>)].sort() : k.value;
    const prev = out.get(k.key);
    if (prev && !k.first) (prev.value as unknown[]).push(...(k.value as unknown[]));
    else out.set(k.key, { type: k.type, value, expire_at: k.expire_at });
  }
  return out;
}

let srcPg: string;
let srcRedis: RestartableService;
const influx1 = () => inject('influx1Url');
const srcDb = `backup_src_${process.pid}`;
let fresh: { pg: RestartableService; influx: RestartableService; redis: RestartableService };
const stops: Array<() => Promise<void>> = [];
const daemons: DaemonProcess[] = [];

beforeAll(async () => {
  const started = await Promise.all([startRedis(), startPostgres(), startInflux1(), startRedis()]);
  srcRedis = started[0];
  fresh = { pg: started[1], influx: started[2], redis: started[3] };
  for (const s of started) stops.push(() => s.stop());
  srcPg = await freshDatabase(inject('postgresUrl'), 'backup_src');
  await migrate(srcPg);
  const c = new pg.Client({ connectionString: srcPg });
  await c.connect();
  await c.query(`
    INSERT INTO users (username, email, password_hash, role) VALUES
      ('관리자', 'admin@example.com', 'pbkdf2:sha256:1000$salt$00ff', 'admin'),
      ('kim', 'kim@example.com', 'scrypt:32768:8:1$s$ab', 'user');
    INSERT INTO buildings (id, name, address, total_area, floors, building_type) VALUES
      (901, '건물A', '서울시 강남구', 1234.50, 12, 'office'),
      (902, 'Tower "B", east', 'a\\b', NULL, NULL, NULL);
    SELECT setval(pg_get_serial_sequence('buildings', 'id'), 902);
    INSERT INTO tenants (building_id, name, contact_info, move_in_date, contract_end_date)
      VALUES (901, '카페', '010-1234-5678', '2024-01-15', '2026-12-31');
    INSERT INTO sensor_data (building_id, sensor_type, value, unit, recorded_at)
      VALUES (901, 'power', 1234.56, 'W', '2024-01-15 10:30:00.123456');
    INSERT INTO alert_rules (id, sensor_type, above, severity) VALUES ('power-high', 'power', 5000, 'critical');
    INSERT INTO mqtt_devices (username, password_hash, building_id, role)
      VALUES ('dev1', 'pbkdf2:sha256:1000$salt$abcd', 901, 'sensor');
    INSERT INTO sensor_rollups_hourly VALUES (902, '1', 'r', 'power', '2024-01-15 10:00:00', 3, 0.1, -1.5e-300, 1e300);
  `);
  await c.end();
  const r = new Redis(srcRedis.url);
  await r.set(
    'session:s1',
    JSON.stringify({ user_id: 1, username: 'kim', expires_at: '2099-01-01T00:00:00Z' }),
    'EX',
    3600,
  );
  await r.set('session:bin', Buffer.from([0xff, 0x00, 0x01]));
  await r.set('forecast:building_902', '{"building_id":"building_902","points":[]}', 'EX', 7200);
  await r.hset('cache:latest:building_902', '1/r/power', '{"value":1}');
  await r.pexpire('cache:latest:building_902', 86_400_000);
  await r.set('other:key', 'not backed up');
  r.disconnect();
}, 120_000);

afterAll(async () => {
  for (const d of daemons) if (d.child.exitCode === null) d.child.kill('SIGKILL');
  await Promise.all(stops.map((s) => s().catch(() => {})));
});

describe('restore drill: back up while ingesting, restore into fresh servers, compare exactly', () => {
  const backups = tempDir('backup-sets');
  const dataDir = tempDir('backup-daemon');
  const srcEnv = () => ({
    INFLUX_URL: influx1(),
    INFLUX_DATABASE: srcDb,
    DATABASE_URL: srcPg,
    REDIS_URL: srcRedis.url,
    DATA_DIR: dataDir,
  });
  const dstData = tempDir('backup-restored');
  const dstDb = 'restored';
  const dstEnv = () => ({
    INFLUX_URL: fresh.influx.url,
    INFLUX_DATABASE: dstDb,
    DATABASE_URL: fresh.pg.url,
    REDIS_URL: fresh.redis.url,
    DATA_DIR: dstData,
  });
  let manifest: {
    name: string;
    complete: boolean;
    parts: Record<string, Record<string, unknown>>;
    files: Array<{ path: string; bytes: number; sha256: string }>;
  };
  let setDir: string;
  let srcRedisAtBackup: Awaited<ReturnType<typeof redisKeys>>;
  let srcRedisAt = 0;

  it('backs up while a real MQTT client publishes, with progress lines and a manifest', async () => {
    const d = await spawnDaemon({
      ...srcEnv(),
      EI_PIPELINE_FLUSH_INTERVAL_MS: '100',
      EI_ROLLUPS_FLUSH_INTERVAL_MS: '200',
    });
    daemons.push(d);
    const r = new Redis(srcRedis.url);
    await eventually(async () => (await r.exists('cache:building_list')) === 1, 15_000, 'metadata cached');

    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${d.mqttPort}`, { protocolVersion: 4 });
    let publishing = true;
    let acked = 0;
    let i = 0;
    const loop = (async () => {
      while (publishing) {
        const ts = Date.now();
        await client.publishAsync(
          'sensors/building_901/3층/회의실 A,=1/power',
          JSON.stringify([{ value: 6000 + (i % 50) / 4, timestamp: ts, note: 'a\nb "q"' }]),
          { qos: 1 },
        );
        await client.publishAsync(
          'sensors/902/B1/room\\x/temperature',
          JSON.stringify({ value: 20 + (i % 10) / 10, timestamp: ts, status: 'ok', door: i % 2 === 0 }),
          { qos: 1 },
        );
        acked += 2;
        i++;
        await new Promise((res) => setTimeout(res, 10));
      }
    })();
    // the alert raised by the first readings reaches Redis (hash, stream, notification with TTL)
    await eventually(
      async () => (await r.exists('alerts:active:building_901')) === 1,
      15_000,
      'alert raised',
    );
    await eventually(async () => (await r.exists('notification:building_901')) === 1, 5000, 'notification');
    await eventually(async () => acked > 200, 15_000, 'readings flowing');

    const b = await cli(['backup', '--to', backups], srcEnv());
    expect(b.code, b.out).toBe(0);
    const beforeStop = acked;
    srcRedisAt = Date.now();
    srcRedisAtBackup = await redisKeys(srcRedis.url);
    // ingestion goes on after the backup
    await eventually(async () => acked > beforeStop + 100, 15_000, 'more readings');
    publishing = false;
    await loop;
    await client.endAsync();
    d.child.kill('SIGTERM');
    expect((await d.exited).code).toBe(0);
    r.disconnect();

    expect(b.out).toMatch(/postgres: buildings: 2 rows/);
    expect(b.out).toMatch(/influx: \d+ readings/);
    expect(b.out).toMatch(/backup set energy-ingest-\S+ written to/);
    const sets = readdirSync(backups);
    expect(sets).toHaveLength(1);
    setDir = join(backups, sets[0]!);
    manifest = JSON.parse(readFileSync(join(setDir, 'manifest.json'), 'utf8'));
    expect(manifest.complete).toBe(true);
    expect(Object.fromEntries(Object.entries(manifest.parts).map(([k, p]) => [k, p.status]))).toEqual({
      postgres: 'ok',
      redis: 'ok',
      state: 'ok',
      influx: 'ok',
    });
    for (const f of manifest.files) {
      expect(f.sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(readFileSync(join(setDir, f.path)).length).toBe(f.bytes);
    }
    expect(manifest.files.map((f) => f.path)).toEqual(
      expect.arrayContaining([
        'postgres/buildings.jsonl.gz',
        'postgres/sensor_rollups_hourly.jsonl.gz',
        'redis/keys.jsonl.gz',
        'influx/sensor_readings.lp.gz',
        'state/alerts/journal.jsonl',
        'state/metadata.json',
      ]),
    );
  }, 90_000);

  let firstRestore: {
    tables: Record<string, string[]>;
    readings: string[];
    redis: Map<string, unknown>;
    state: string[];
  };

  async function snapshotTarget() {
    const tables: Record<string, string[]> = {};
    for (const t of TABLES) tables[t] = await tableRows(fresh.pg.url, t);
    const keys = await redisKeys(fresh.redis.url);
    return {
      tables,
      readings: await readings(fresh.influx.url, dstDb),
      redis: new Map([...keys].map(([k, v]) => [k, { type: v.type, value: v.value }])),
      state: ['alerts/journal.jsonl', 'metadata.json'].map((f) => readFileSync(join(dstData, f), 'utf8')),
    };
  }

  it('restores into fresh PostgreSQL, InfluxDB and Redis servers: everything equal', async () => {
    const r = await cli(['restore', '--from', backups], dstEnv());
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/every SHA-256 matches/);

    // PostgreSQL: the tables the daemon does not touch equal the source row for row;
    // every table equals the set's rows (the roll-ups as of the backup's snapshot)
    for (const t of STATIC_TABLES)
      expect(await tableRows(fresh.pg.url, t), t).toEqual(await tableRows(srcPg, t));
    const pgPart = manifest.parts.postgres as { tables: Record<string, { rows: number; file: string }> };
    for (const t of TABLES) {
      const restored = await tableRows(fresh.pg.url, t);
      expect(restored, t).toEqual(gzLines(join(setDir, pgPart.tables[t]!.file)).sort());
      expect(restored.length).toBe(pgPart.tables[t]!.rows);
    }
    // the snapshot is one instant: every restored roll-up row is at most what the source holds now
    const srcRollups = new Map(
      (await tableRows(srcPg, 'sensor_rollups_hourly')).map((j) => {
        const o = JSON.parse(j);
        return [`${o.building_id}/${o.floor}/${o.room}/${o.sensor_type}/${o.hour}`, o.count as number];
      }),
    );
    let rolled = 0;
    for (const j of await tableRows(fresh.pg.url, 'sensor_rollups_hourly')) {
      const o = JSON.parse(j);
      expect(o.count).toBeLessThanOrEqual(
        srcRollups.get(`${o.building_id}/${o.floor}/${o.room}/${o.sensor_type}/${o.hour}`)!,
      );
      if (o.building_id !== 902 || o.floor !== '1') rolled += o.count;
    }
    expect(rolled).toBeGreaterThan(0);

    // InfluxDB: every reading the source holds from before the cut, and nothing else
    const cut = (manifest.parts.influx as { until_ms: number }).until_ms;
    const before = await readings(influx1(), srcDb, `WHERE time < ${cut}ms`);
    const after = await readings(influx1(), srcDb, `WHERE time >= ${cut}ms`);
    expect(before.length).toBeGreaterThan(100);
    expect(after.length).toBeGreaterThan(50); // ingestion went on past the backup
    const restored = await readings(fresh.influx.url, dstDb);
    expect(restored.length).toBe(before.length);
    expect(restored).toEqual(before);
    expect((manifest.parts.influx as { points: number }).points).toBe(before.length);
    expect(
      restored.some((j) => j.includes('"room":"회의실 A,=1"') && j.includes('"note":"a\\nb \\"q\\""')),
    ).toBe(true);
    expect(restored.some((j) => j.includes('"room":"room\\\\x"') && j.includes('"door":true'))).toBe(true);

    // Redis: exactly the set's keys, each with its value and its TTL (an instant, so ≈ the time since)
    const inSet = backupKeys(join(setDir, 'redis/keys.jsonl.gz'));
    const dst = await redisKeys(fresh.redis.url);
    expect([...dst.keys()].sort()).toEqual([...inSet.keys()].sort());
    expect([...dst.keys()]).toEqual(
      expect.arrayContaining([
        'alerts:stream',
        'alerts:active:building_901',
        'notification:building_901',
        'cache:building_list',
        'cache:building:901',
        'cache:latest:building_902',
        'forecast:building_902',
        'session:s1',
        'session:bin',
      ]),
    );
    const now = Date.now();
    for (const [key, k] of inSet) {
      const got = dst.get(key)!;
      expect({ key, type: got.type, value: got.value }).toEqual({ key, type: k.type, value: k.value });
      if (k.expire_at === null) expect(got.pttl, key).toBe(-1);
      else expect(Math.abs(got.pttl - (k.expire_at - now)), key).toBeLessThan(5000);
    }
    // and the set holds what the source held at backup time (same values, TTL ≈)
    for (const [key, s] of srcRedisAtBackup) {
      // the daemon's latest-readings cache (section 16) rewrites these as readings arrive, during the
      // backup too; the set's own copy of them is compared with the restore above
      if (key.startsWith('cache:latest:')) continue;
      const got = dst.get(key)!;
      expect({ key, type: got?.type, value: got?.value }).toEqual({ key, type: s.type, value: s.value });
      // the same expiry instant: TTL then vs TTL now, minus the time in between
      if (s.pttl === -1) expect(got.pttl).toBe(-1);
      else expect(Math.abs(now + got.pttl - (srcRedisAt + s.pttl)), key).toBeLessThan(5000);
    }
    expect(dst.get('session:bin')!.value).toEqual({ b64: Buffer.from([0xff, 0, 1]).toString('base64') });
    expect(dst.has('other:key')).toBe(false);

    // the daemon's state files
    expect(readFileSync(join(dstData, 'alerts/journal.jsonl'), 'utf8')).toBe(
      readFileSync(join(setDir, 'state/alerts/journal.jsonl'), 'utf8'),
    );
    expect(readFileSync(join(dstData, 'alerts/journal.jsonl'), 'utf8')).toContain('power-high');
    expect(readFileSync(join(dstData, 'metadata.json'), 'utf8')).toBe(
      readFileSync(join(setDir, 'state/metadata.json'), 'utf8'),
    );
    firstRestore = await snapshotTarget();
  }, 90_000);

  it('restoring the same set twice leaves the same data; sequences continue past the restored ids', async () => {
    const r = await cli(['restore', '--from', setDir], dstEnv());
    expect(r.code, r.out).toBe(0);
    const second = await snapshotTarget();
    expect(second.tables).toEqual(firstRestore.tables);
    expect(second.readings).toEqual(firstRestore.readings);
    expect([...second.redis]).toEqual([...firstRestore.redis]);
    expect(second.state).toEqual(firstRestore.state);
    const c = new pg.Client({ connectionString: fresh.pg.url });
    await c.connect();
    const id = await c.query("INSERT INTO buildings (name, address) VALUES ('new', 'x') RETURNING id");
    await c.end();
    expect(id.rows[0].id).toBe(903);
  }, 60_000);

  it('the set made from InfluxDB 1.x loads through the v2 write API (VictoriaMetrics): --parts influx', async () => {
    const r = await cli(['restore', '--from', setDir, '--parts', 'influx'], {
      INFLUX_URL: inject('victoriaUrl'),
      INFLUX_API: 'v2',
      INFLUX_TOKEN: 'unused',
      DATA_DIR: tempDir('backup-vm'),
    });
    expect(r.code, r.out).toBe(0);
    const cut = (manifest.parts.influx as { until_ms: number }).until_ms;
    const src = await influxQuery(
      influx1(),
      srcDb,
      `SELECT value FROM sensor_readings WHERE building_id = 'building_902' AND time < ${cut}ms`,
    );
    const vm = await victoriaExport(
      inject('victoriaUrl'),
      '{__name__="sensor_readings_value",building_id="building_902"}',
    );
    expect(vm).toHaveLength(1);
    expect(vm[0]!.metric).toMatchObject({ floor: 'B1', room: 'room\\x', sensor_type: 'temperature' });
    const pairs = vm[0]!.timestamps.map((t, i) => [t, vm[0]!.values[i]]);
    expect(pairs).toEqual(src.map((row) => [row.time, row.value]));
  }, 60_000);

  it('refuses a set whose manifest hash does not match, before restoring anything', async () => {
    const target = tempDir('backup-corrupt');
    const copy = join(target, manifest.name);
    await new Promise<void>((res, rej) =>
      execFile('cp', ['-r', setDir, copy], (err) => (err ? rej(err) : res())),
    );
    const m = JSON.parse(readFileSync(join(copy, 'manifest.json'), 'utf8'));
    const f = m.files.find((x: { path: string }) => x.path === 'redis/keys.jsonl.gz');
    const intact = f.sha256;
    f.sha256 = `${f.sha256.slice(0, -1)}${f.sha256.endsWith('0') ? '1' : '0'}`;
    writeFileSync(join(copy, 'manifest.json'), JSON.stringify(m));
    const emptyRedis = await startRedis();
    stops.push(() => emptyRedis.stop());
    const dataDirX = tempDir('backup-refused');
    const r = await cli(['restore', '--from', copy], {
      REDIS_URL: emptyRedis.url,
      DATA_DIR: dataDirX,
      DATABASE_URL: await freshDatabase(inject('postgresUrl'), 'backup_refused'),
    });
    expect(r.code).toBe(1);
    expect(r.out).toMatch(
      /EI_BACKUP_CORRUPT: .*is corrupted, nothing restored: redis\/keys\.jsonl\.gz: SHA-256/,
    );
    const er = new Redis(emptyRedis.url);
    expect(await er.dbsize()).toBe(0);
    er.disconnect();
    expect(existsSync(join(dataDirX, 'alerts'))).toBe(false);

    // a flipped byte in a file (manifest intact) is refused the same way
    f.sha256 = intact;
    writeFileSync(join(copy, 'manifest.json'), JSON.stringify(m));
    const state = join(copy, 'state/metadata.json');
    const bytes = readFileSync(state);
    bytes[0] = bytes[0]! ^ 1;
    writeFileSync(state, bytes);
    const r2 = await cli(['restore', '--from', copy, '--parts', 'state'], { DATA_DIR: dataDirX });
    expect(r2.code).toBe(1);
    expect(r2.out).toMatch(/state\/metadata\.json: SHA-256/);
    expect(existsSync(join(dataDirX, 'metadata.json'))).toBe(false);
  }, 60_000);
});
