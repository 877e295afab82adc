import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { MIGRATIONS, migrate } from '../../src/metadata/migrations.js';
import { freshDatabase } from '../helpers/services.js';

describe('energy-ingest migrate (real PostgreSQL)', () => {
  let url: string;
  let db: pg.Client;
  beforeAll(async () => {
    url = await freshDatabase(inject('postgresUrl'), 'mig_test');
    db = new pg.Client({ connectionString: url });
    await db.connect();
  });
  afterAll(async () => {
    await db.end();
  });

  it('creates the guide tables exactly, with their indexes, and ours', async () => {
    const lines: string[] = [];
    const r = await migrate(url, (l) => lines.push(l));
    expect(r.applied.map((a) => a.version)).toEqual([1, 2, 3]);
    expect(lines.join('\n')).toMatch(
      /migration 1: system tables from the DB guide …\nmigration 1: done in \d+ ms/,
    );
    const cols = await db.query<{
      table_name: string;
      column_name: string;
      data_type: string;
      is_nullable: string;
      column_default: string | null;
      character_maximum_length: number | null;
      numeric_precision: number | null;
      numeric_scale: number | null;
    }>(
      `SELECT table_name, column_name, data_type, is_nullable, column_default, character_maximum_length, numeric_precision, numeric_scale
       FROM information_schema.columns WHERE table_schema = 'public' AND table_name IN ('users','buildings','tenants','sensor_data') ORDER BY table_name, ordinal_position`,
    );
    const shape = (t: string) =>
      cols.rows
        .filter((c) => c.table_name === t)
        .map(
          (c) =>
            `${c.column_name} ${c.data_type}${c.character_maximum_length ? `(${c.character_maximum_length})` : ''}${c.data_type === 'numeric' ? `(${c.numeric_precision},${c.numeric_scale})` : ''}${c.is_nullable === 'NO' ? ' not null' : ''}${c.column_default && !c.column_default.startsWith('nextval') ? ` default ${c.column_default}` : ''}`,
        );
    expect(shape('users')).toEqual([
      'id integer not null',
      'username character varying(50) not null',
      'email character varying(100) not null',
      'password_hash character varying(255) not null',
      "role character varying(20) default 'user'::character varying",
      'created_at timestamp without time zone default CURRENT_TIMESTAMP',
    ]);
    expect(shape('buildings')).toEqual([
      'id integer not null',
      'name character varying(100) not null',
      'address text not null',
      'total_area numeric(10,2)',
      'floors integer',
      'building_type character varying(50)',
      'created_at timestamp without time zone default CURRENT_TIMESTAMP',
    ]);
    expect(shape('tenants')).toEqual([
      'id integer not null',
      'building_id integer',
      'name character varying(100) not null',
      'contact_info character varying(100)',
      'move_in_date date',
      'contract_end_date date',
      'created_at timestamp without time zone default CURRENT_TIMESTAMP',
    ]);
    expect(shape('sensor_data')).toEqual([
      'id integer not null',
      'building_id integer',
      'sensor_type character varying(50) not null',
      'value numeric(10,2) not null',
      'unit character varying(20)',
      'recorded_at timestamp without time zone default CURRENT_TIMESTAMP',
    ]);
    const idx = await db.query<{ indexname: string; indexdef: string }>(
      `SELECT indexname, indexdef FROM pg_indexes WHERE indexname LIKE 'idx_%' ORDER BY 1`,
    );
    expect(idx.rows.map((r) => r.indexdef)).toEqual([
      'CREATE INDEX idx_sensor_data_building_time ON public.sensor_data USING btree (building_id, recorded_at)',
      'CREATE INDEX idx_users_email ON public.users USING btree (email)',
    ]);
    const ours = await db.query<{ table_name: string }>(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name IN ('alert_rules','mqtt_devices','sensor_rollups_hourly','energy_usage_daily') ORDER BY 1`,
    );
    expect(ours.rows.map((r) => r.table_name)).toEqual([
      'alert_rules',
      'energy_usage_daily',
      'mqtt_devices',
      'sensor_rollups_hourly',
    ]);
  });

  it('is idempotent: a second run changes nothing', async () => {
    const before = await db.query(
      'SELECT version, applied_at FROM energy_ingest_migrations ORDER BY version',
    );
    const r = await migrate(url);
    expect(r).toEqual({ applied: [], current: 3 });
    expect(
      (await db.query('SELECT version, applied_at FROM energy_ingest_migrations ORDER BY version')).rows,
    ).toEqual(before.rows);
  });

  it('upgrades a database left at an older version', async () => {
    const old = await freshDatabase(inject('postgresUrl'), 'mig_old');
    expect((await migrate(old, () => {}, MIGRATIONS.slice(0, 1))).applied.map((a) => a.version)).toEqual([1]);
    const up = await migrate(old);
    expect(up.applied.map((a) => a.version)).toEqual([2, 3]);
    expect(up.current).toBe(3);
  });

  it('a failed migration leaves no half state', async () => {
    const broken = [
      ...MIGRATIONS,
      { version: 4, name: 'broken', sql: 'CREATE TABLE half_done (x int); SELECT no_such_function();' },
    ];
    await expect(migrate(url, () => {}, broken)).rejects.toMatchObject({ code: 'EI_MIGRATION_FAILED' });
    const t = await db.query(`SELECT to_regclass('public.half_done') AS t`);
    expect(t.rows[0].t).toBeNull();
    expect((await db.query('SELECT max(version) AS v FROM energy_ingest_migrations')).rows[0].v).toBe(3);
  });

  it('NOTIFY energy_ingest_metadata on changes to buildings, tenants, alert_rules and mqtt_devices', async () => {
    const listener = new pg.Client({ connectionString: url });
    await listener.connect();
    const got: string[] = [];
    listener.on('notification', (n) => got.push(`${n.channel}:${n.payload}`));
    await listener.query('LISTEN energy_ingest_metadata');
    const b = await db.query(
      `INSERT INTO buildings (name, address) VALUES ('건물A', '서울시 강남구') RETURNING id`,
    );
    await db.query(`INSERT INTO tenants (building_id, name) VALUES ($1, '입주사')`, [b.rows[0].id]);
    await db.query(`INSERT INTO alert_rules (id, sensor_type, above) VALUES ('hot', 'temperature', 30)`);
    await db.query(`INSERT INTO mqtt_devices (username, password_hash) VALUES ('s1', 'x')`);
    await new Promise((r) => setTimeout(r, 200));
    await listener.end();
    expect(got).toEqual([
      'energy_ingest_metadata:buildings',
      'energy_ingest_metadata:tenants',
      'energy_ingest_metadata:alert_rules',
      'energy_ingest_metadata:mqtt_devices',
    ]);
  });

  it('energy_usage_daily gives kWh per building per day from power roll-ups in W', async () => {
    // two power series in building 7: 1000 W for two hours, 500 W for one hour → 2.5 kWh
    await db.query(`INSERT INTO sensor_rollups_hourly VALUES
      (7, '1', 'a', 'power', '2024-01-15 10:00', 4, 4000, 1000, 1000),
      (7, '1', 'a', 'power', '2024-01-15 11:00', 2, 2000, 1000, 1000),
      (7, '1', 'b', 'power', '2024-01-15 10:00', 3, 1500, 500, 500),
      (7, '1', 'b', 'temperature', '2024-01-15 10:00', 3, 60, 20, 20)`);
    const r = await db.query(
      `SELECT building_id, to_char(day, 'YYYY-MM-DD') AS day, kwh FROM energy_usage_daily WHERE building_id = 7`,
    );
    expect(r.rows).toEqual([{ building_id: 7, day: '2024-01-15', kwh: 2.5 }]);
  });
});
