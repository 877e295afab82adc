import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { hashPassword } from '../../src/broker/credentials.js';
import { migrate } from '../../src/metadata/migrations.js';
import { upsertDevice } from '../../src/metadata/postgresStore.js';
import { type DaemonProcess, metricValue, spawnDaemon } from '../helpers/daemon.js';
import { eventually, freshDatabase, tempDir } from '../helpers/services.js';

// Issue 18 items 8 and 4 (reload part): NOTIFY-driven reloads are coalesced
// (one in flight, one pending, a minimum interval), an invalid alert_rules row
// is logged once per change, and a failed reload is retried with backoff.
// Reloads are counted from the daemon's own debug line "metadata loaded" (which
// the unfixed daemon also writes) and cross-checked with /metrics.

describe('metadata reloads under NOTIFY bursts and faults (real PostgreSQL, built daemon)', () => {
  let url: string;
  let db: pg.Client;
  let d: DaemonProcess;
  let dataDir: string;
  let lines: string[] = [];
  const loads = () => lines.filter((l) => l.includes('"msg":"metadata loaded"')).length;
  const skipped = (rule: string) =>
    lines.filter((l) => l.includes('alert_rules row skipped') && l.includes(`"rule":"${rule}"`)).length;

  beforeAll(async () => {
    url = await freshDatabase(inject('postgresUrl'), 'meta_reload');
    await migrate(url);
    db = new pg.Client({ connectionString: url });
    await db.connect();
    await db.query(`INSERT INTO buildings (id, name, address) VALUES (1, '건물A', '서울시 강남구')`);
    const pool = new pg.Pool({ connectionString: url, max: 1 });
    await upsertDevice(pool, {
      username: 'meter-9',
      passwordHash: await hashPassword('meter-9-pass', 16384),
      role: 'sensor',
      buildingId: 1,
    });
    await pool.end();
    dataDir = tempDir('meta-reload');
    d = await spawnDaemon({
      DATABASE_URL: url,
      DATA_DIR: dataDir,
      ALLOW_ANONYMOUS: 'false',
      LOG_LEVEL: 'debug',
      // the cron reload must not be what applies the changes below: once a year
      EI_METADATA_REFRESH_CRON: '0 0 1 1 *',
    });
    let partial = '';
    d.child.stdout!.on('data', (b: Buffer) => {
      const parts = (partial + b.toString()).split('\n');
      partial = parts.pop()!;
      lines.push(...parts);
    });
    await eventually(async () => metricValue(await d.metrics(), 'energy_ingest_metadata_age_seconds') < 60);
  }, 40_000);

  afterAll(async () => {
    if (d) {
      d.child.kill('SIGKILL');
      await d.exited;
    }
    await db?.end();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('a burst of 2,000 UPDATEs (one NOTIFY each) makes a few reloads, not one per change, and the last state is applied', async () => {
    lines = [];
    const before = await d.metrics();
    const reloads0 = metricValue(before, 'energy_ingest_metadata_reloads_total');
    const t0 = Date.now();
    for (let i = 1; i <= 2000; i++)
      await db.query('UPDATE buildings SET name = $1 WHERE id = 1', [`burst-${i}`]);
    const burstS = (Date.now() - t0) / 1000;
    await eventually(
      async () => {
        // the daemon saves every snapshot it applies (the API wants a login here)
        const saved = JSON.parse(readFileSync(join(dataDir, 'metadata.json'), 'utf8')) as {
          buildings: Array<{ name: string }>;
        };
        return saved.buildings[0]?.name === 'burst-2000';
      },
      15_000,
      'the last UPDATE applied',
    );
    // let a pending reload (if any) finish before counting
    await new Promise((r) => setTimeout(r, 1500));
    const after = await d.metrics();
    const logged = loads();
    const counted = metricValue(after, 'energy_ingest_metadata_reloads_total') - reloads0;
    const coalesced = metricValue(after, 'energy_ingest_metadata_reload_requests_coalesced_total');
    const cpuS =
      metricValue(after, 'energy_ingest_process_cpu_seconds_total') -
      metricValue(before, 'energy_ingest_process_cpu_seconds_total');
    console.log(
      `burst: 2000 UPDATEs in ${burstS.toFixed(1)} s -> ${logged} reloads (metric ${counted}), ${coalesced} requests coalesced, daemon CPU ${cpuS.toFixed(2)} s`,
    );
    // minimum interval 1 s: about one reload per second of burst, plus the first and the last
    expect(logged).toBeGreaterThanOrEqual(1);
    expect(logged).toBeLessThanOrEqual(Math.ceil(burstS) + 3);
    // the log line comes just before the counter moves: one reload may be between the two reads
    expect(Math.abs(counted - logged)).toBeLessThanOrEqual(1);
    expect(metricValue(after, 'energy_ingest_metadata_notifications_total')).toBeGreaterThanOrEqual(2000);
    expect(coalesced).toBeGreaterThanOrEqual(2000 - logged);
  }, 60_000);

  it('an invalid alert_rules row is logged once across reloads, and again once after it changes', async () => {
    lines = [];
    // no threshold and no offline_after_seconds: parseRule rejects it
    await db.query(`INSERT INTO alert_rules (id, sensor_type) VALUES ('bad-rule', 'temperature')`);
    await eventually(async () => skipped('bad-rule') >= 1, 10_000, 'the invalid row logged');
    for (let i = 0; i < 3; i++) {
      const n = loads();
      await db.query('UPDATE buildings SET name = $1 WHERE id = 1', [`again-${i}`]);
      await eventually(async () => loads() > n, 10_000, `reload ${i + 1}`);
    }
    expect(loads()).toBeGreaterThanOrEqual(4);
    expect(skipped('bad-rule')).toBe(1);
    // a change to the row is news: logged once more
    await db.query(`UPDATE alert_rules SET severity = 'critical' WHERE id = 'bad-rule'`);
    await eventually(async () => skipped('bad-rule') >= 2, 10_000, 'the changed row logged');
    const n = loads();
    await db.query('UPDATE buildings SET name = $1 WHERE id = 1', ['again-x']);
    await eventually(async () => loads() > n, 10_000, 'one more reload');
    expect(skipped('bad-rule')).toBe(2);
  }, 60_000);

  it('a reload that fails is retried with backoff: a disabled device is cut off within seconds, not at the next cron run', async () => {
    const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${d.mqttPort}`, {
      protocolVersion: 4,
      username: 'meter-9',
      password: 'meter-9-pass',
      reconnectPeriod: 0,
    });
    let closedAt = 0;
    c.on('close', () => {
      closedAt ||= Date.now();
    });
    c.on('error', () => {});
    const failures0 = metricValue(await d.metrics(), 'energy_ingest_metadata_reload_failures_total');
    // another session holds alert_rules (as a migration or a long report would): the reload waits on it
    const locker = new pg.Client({ connectionString: url });
    locker.on('error', () => {});
    await locker.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE alert_rules IN ACCESS EXCLUSIVE MODE');
      await db.query(`UPDATE mqtt_devices SET enabled = FALSE WHERE username = 'meter-9'`);
      const waiting = await eventually(
        async () => {
          const r = await db.query<{ pid: number }>(
            `SELECT pid FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%FROM alert_rules%'`,
          );
          return r.rows[0]?.pid;
        },
        10_000,
        'the reload waiting on the lock',
      );
      // the reload fails (an administrator ends it: the same error path as a lock or statement timeout)
      await db.query('SELECT pg_terminate_backend($1)', [waiting]);
      const failedAt = Date.now();
      await new Promise((r) => setTimeout(r, 500));
      expect(closedAt).toBe(0);
      await locker.query('COMMIT');
      await eventually(
        async () => closedAt > 0,
        15_000,
        'the disabled device disconnected by a retried reload',
      );
      console.log(`disabled device cut off ${closedAt - failedAt} ms after the failed reload`);
      expect(closedAt - failedAt).toBeLessThan(15_000);
      expect(
        metricValue(await d.metrics(), 'energy_ingest_metadata_reload_failures_total'),
      ).toBeGreaterThanOrEqual(failures0 + 1);
    } finally {
      await locker.end().catch(() => {});
      c.end(true);
    }
  }, 60_000);
});
