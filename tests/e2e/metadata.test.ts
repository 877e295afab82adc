import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { migrate } from '../../src/metadata/migrations.js';
import { deadLetters, mosquittoPub, startApp, type TestApp } from '../helpers/app.js';
import { eventually, freshDatabase, type RestartableService, startPostgres } from '../helpers/services.js';

async function migratedDatabase(adminUrl: string, name: string): Promise<string> {
  const url = await freshDatabase(adminUrl, name);
  await migrate(url);
  return url;
}

/** Publishes one reading and says whether it was accepted (written) or rejected as unknown_building. */
async function outcome(t: TestApp, building: string): Promise<'accepted' | 'unknown_building'> {
  const written = t.app.metrics.pointsWritten.get();
  const rejected = deadLetters(t.dataDir).filter((d) => d.reason === 'unknown_building').length;
  await mosquittoPub(t.app.mqttPort, `sensors/${building}/1/lobby/temperature`, '21');
  return eventually(async () => {
    if (t.app.metrics.pointsWritten.get() > written) return 'accepted' as const;
    if (deadLetters(t.dataDir).filter((d) => d.reason === 'unknown_building').length > rejected)
      return 'unknown_building' as const;
    return undefined;
  }, 5000);
}

describe('metadata from PostgreSQL, live', () => {
  let url: string;
  let db: pg.Client;
  let redis: Redis;
  let t: TestApp;
  beforeAll(async () => {
    url = await migratedDatabase(inject('postgresUrl'), 'meta_live');
    db = new pg.Client({ connectionString: url });
    await db.connect();
    await db.query(
      `INSERT INTO buildings (id, name, address, total_area, floors, building_type) VALUES (1, '건물A', '서울시 강남구', 1234.5, 12, 'office')`,
    );
    await db.query(
      `INSERT INTO tenants (building_id, name, contact_info, move_in_date) VALUES (1, '입주사', '02-123-4567', '2024-01-15')`,
    );
    redis = new Redis(inject('redisUrl'));
    t = await startApp({ DATABASE_URL: url, REDIS_URL: inject('redisUrl') });
  });
  afterAll(async () => {
    await t.stop();
    await db.end();
    redis.disconnect();
  });

  it('accepts known buildings and rejects the others', async () => {
    expect(await outcome(t, 'building_001')).toBe('accepted');
    expect(await outcome(t, '2')).toBe('unknown_building');
  });

  it('a building inserted in PostgreSQL is accepted within one second, a deleted one rejected within one second', async () => {
    await db.query(`INSERT INTO buildings (id, name, address) VALUES (2, '건물B', '서울시 서초구')`);
    const t0 = Date.now();
    await eventually(
      async () => t.app.buildings.accepts(2) && t.app.buildings.size === 2,
      1000,
      'new building known',
    );
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(await outcome(t, 'building_002')).toBe('accepted');
    await db.query('DELETE FROM buildings WHERE id = 2');
    const t1 = Date.now();
    await eventually(async () => !t.app.buildings.accepts(2), 1000, 'deleted building forgotten');
    expect(Date.now() - t1).toBeLessThan(1000);
    expect(await outcome(t, 'building_002')).toBe('unknown_building');
  });

  it("serves the snapshot, keeps the last good copy on disk, and fills the Redis cache in the guide's shape", async () => {
    const api = (await (await fetch(`${t.httpUrl}/api/buildings`)).json()) as {
      source: string;
      buildings: Array<Record<string, unknown>>;
    };
    expect(api.source).toBe('postgres');
    expect(api.buildings).toEqual([
      {
        id: 1,
        key: 'building_001',
        name: '건물A',
        address: '서울시 강남구',
        total_area: 1234.5,
        floors: 12,
        building_type: 'office',
        tenants: [
          expect.objectContaining({
            building_id: 1,
            name: '입주사',
            contact_info: '02-123-4567',
            move_in_date: '2024-01-15',
          }),
        ],
      },
    ]);
    const file = join(t.dataDir, 'metadata.json');
    expect(existsSync(file)).toBe(true);
    expect(JSON.parse(readFileSync(file, 'utf8')).buildings).toHaveLength(1);
    await eventually(
      async () =>
        (await redis.get('cache:building_list')) ===
        JSON.stringify([{ id: 1, name: '건물A', address: '서울시 강남구' }]),
    );
    expect(await redis.ttl('cache:building_list')).toBeGreaterThan(500);
    const one = JSON.parse((await redis.get('cache:building:1'))!);
    expect(one).toEqual({
      id: 1,
      name: '건물A',
      address: '서울시 강남구',
      total_area: 1234.5,
      floors: 12,
      building_type: 'office',
      tenants: [
        {
          id: 1,
          building_id: 1,
          name: '입주사',
          contact_info: '02-123-4567',
          move_in_date: '2024-01-15',
          contract_end_date: null,
        },
      ],
    });
    expect(await redis.exists('cache:building:2')).toBe(0);
  });

  it('/ready reports PostgreSQL and Redis with their latency', async () => {
    const r = (await (await fetch(`${t.httpUrl}/ready`)).json()) as {
      status: string;
      checks: Record<string, { ok: boolean; latency_ms: number }>;
    };
    expect(r.status).toBe('ready');
    expect(r.checks.postgres).toMatchObject({ ok: true });
    expect(r.checks.redis).toMatchObject({ ok: true });
  });
});

describe('PostgreSQL faults', () => {
  let pgServer: RestartableService;
  beforeAll(async () => {
    pgServer = await startPostgres();
  });
  afterAll(async () => {
    await pgServer.stop();
  });

  it('down at start: starts from metadata.json; down mid-run: ingestion goes on, /ready degraded; back: the listener returns', async () => {
    const url = await migratedDatabase(pgServer.url, 'meta_fault');
    const db1 = new pg.Client({ connectionString: url });
    await db1.connect();
    await db1.query(`INSERT INTO buildings (id, name, address) VALUES (1, '건물A', '서울시 강남구')`);
    await db1.end();
    // first run writes metadata.json
    const first = await startApp({ DATABASE_URL: url });
    const dataDir = first.dataDir;
    await first.app.stop();

    await pgServer.crash();
    const { loadConfig } = await import('../../src/config/load.js');
    const { App } = await import('../../src/app.js');
    const { pino } = await import('pino');
    const app = new App(
      loadConfig({
        env: {
          MQTT_PORT: '0',
          HTTP_PORT: '0',
          DATA_DIR: dataDir,
          DATABASE_URL: url,
          EI_PIPELINE_FLUSH_INTERVAL_MS: '100',
        },
      }),
      pino({ level: 'silent' }),
    );
    await app.start();
    const t: TestApp = {
      app,
      dataDir,
      mqttUrl: '',
      httpUrl: `http://127.0.0.1:${app.httpPort}`,
      stop: () => app.stop(),
    };
    try {
      expect(app.snapshot.source).toBe('file');
      expect(await outcome(t, 'building_001')).toBe('accepted');
      expect(await outcome(t, 'building_005')).toBe('unknown_building');
      const ready = await fetch(`${t.httpUrl}/ready`);
      expect(ready.status).toBe(503);
      expect(((await ready.json()) as { checks: { postgres: { ok: boolean } } }).checks.postgres.ok).toBe(
        false,
      );

      await pgServer.restart();
      const db2 = new pg.Client({ connectionString: url });
      db2.on('error', () => {});
      await db2.connect();
      // the listener reconnects on its own; then a NOTIFY-driven load picks up the new building
      await eventually(
        async () => {
          await db2.query(
            `INSERT INTO buildings (id, name, address) VALUES (5, '건물E', '부산시') ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name`,
          );
          await new Promise((r) => setTimeout(r, 300));
          return app.buildings.accepts(5);
        },
        20_000,
        'building 5 known after PostgreSQL came back',
      );
      await db2.end();
      expect(app.snapshot.source).toBe('postgres');
      expect(await outcome(t, 'building_005')).toBe('accepted');
      await eventually(async () => (await fetch(`${t.httpUrl}/ready`)).status === 200, 5000, 'ready again');

      // slow queries: the buildings table locked for 3 s while a refresh is due; ingestion does not wait
      const locker = new pg.Client({ connectionString: url });
      locker.on('error', () => {});
      await locker.connect();
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE buildings IN ACCESS EXCLUSIVE MODE');
      const refreshing = app.buildings.size;
      void fetch(`${t.httpUrl}/ready`);
      const notify = new pg.Client({ connectionString: url });
      notify.on('error', () => {});
      await notify.connect();
      await notify.query(`SELECT pg_notify('energy_ingest_metadata', 'buildings')`);
      await notify.end();
      const t0 = Date.now();
      expect(await outcome(t, 'building_001')).toBe('accepted');
      expect(Date.now() - t0).toBeLessThan(1500);
      await new Promise((r) => setTimeout(r, 2000));
      await locker.query('COMMIT');
      await locker.end();
      expect(app.buildings.size).toBe(refreshing);

      // down mid-run: readings keep flowing, /ready says degraded; back: ready again
      await pgServer.crash();
      expect(await outcome(t, 'building_005')).toBe('accepted');
      await eventually(
        async () => (await fetch(`${t.httpUrl}/ready`)).status === 503,
        5000,
        'degraded while PostgreSQL is down',
      );
      await pgServer.restart();
      await eventually(
        async () => (await fetch(`${t.httpUrl}/ready`)).status === 200,
        15_000,
        'ready after PostgreSQL restart',
      );
    } finally {
      await app.stop();
    }
  });
});
