import pg from 'pg';
import { IngestError } from '../errors.js';

/*
 * Versioned, transactional, idempotent migrations (contract section 8). Each
 * runs in its own transaction together with its row in energy_ingest_migrations,
 * so a failed migration leaves nothing behind and a second run changes nothing.
 * The system's own tables are created exactly as its DB guide defines them,
 * with IF NOT EXISTS: in a running system they usually exist already.
 */

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'system tables from the DB guide',
    sql: `
CREATE TABLE IF NOT EXISTS users (
    id SERIAL PRIMARY KEY,
    username VARCHAR(50) UNIQUE NOT NULL,
    email VARCHAR(100) UNIQUE NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    role VARCHAR(20) DEFAULT 'user',
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE IF NOT EXISTS buildings (
    id SERIAL PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    address TEXT NOT NULL,
    total_area DECIMAL(10,2),
    floors INTEGER,
    building_type VARCHAR(50),
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE IF NOT EXISTS tenants (
    id SERIAL PRIMARY KEY,
    building_id INTEGER REFERENCES buildings(id),
    name VARCHAR(100) NOT NULL,
    contact_info VARCHAR(100),
    move_in_date DATE,
    contract_end_date DATE,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE IF NOT EXISTS sensor_data (
    id SERIAL PRIMARY KEY,
    building_id INTEGER REFERENCES buildings(id),
    sensor_type VARCHAR(50) NOT NULL,
    value DECIMAL(10,2) NOT NULL,
    unit VARCHAR(20),
    recorded_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS idx_sensor_data_building_time ON sensor_data(building_id, recorded_at);
CREATE INDEX IF NOT EXISTS idx_users_email ON users(email);
`,
  },
  {
    version: 2,
    name: 'energy-ingest tables, roll-ups and change notifications',
    sql: `
CREATE TABLE IF NOT EXISTS alert_rules (
    id VARCHAR(64) PRIMARY KEY,
    sensor_type VARCHAR(50) NOT NULL,
    building_id INTEGER NULL REFERENCES buildings(id) ON DELETE CASCADE,
    floor VARCHAR(64) NULL,
    room VARCHAR(64) NULL,
    above DOUBLE PRECISION NULL,
    below DOUBLE PRECISION NULL,
    hysteresis DOUBLE PRECISION NOT NULL DEFAULT 0,
    for_seconds INTEGER NOT NULL DEFAULT 0,
    offline_after_seconds INTEGER NULL,
    severity VARCHAR(20) NOT NULL DEFAULT 'warning',
    message TEXT NULL,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE IF NOT EXISTS mqtt_devices (
    id SERIAL PRIMARY KEY,
    username VARCHAR(100) UNIQUE NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    building_id INTEGER NULL REFERENCES buildings(id) ON DELETE CASCADE,
    role VARCHAR(20) NOT NULL DEFAULT 'sensor',
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
-- building_id without a foreign key: readings of buildings not (yet) in the
-- table may be accepted (ingest.acceptUnknownBuildings) and still roll up.
CREATE TABLE IF NOT EXISTS sensor_rollups_hourly (
    building_id INTEGER NOT NULL,
    floor VARCHAR(64) NOT NULL,
    room VARCHAR(64) NOT NULL,
    sensor_type VARCHAR(64) NOT NULL,
    hour TIMESTAMP NOT NULL,
    count BIGINT NOT NULL,
    sum DOUBLE PRECISION NOT NULL,
    min DOUBLE PRECISION NOT NULL,
    max DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (building_id, floor, room, sensor_type, hour)
);
-- kWh per building per (UTC) day from power readings in W: each series' mean
-- power over an hour is that hour's Wh; a building's day sums its series and hours.
CREATE OR REPLACE VIEW energy_usage_daily AS
SELECT building_id,
       CAST(hour AS DATE) AS day,
       SUM(sum / count) / 1000.0 AS kwh
FROM sensor_rollups_hourly
WHERE sensor_type = 'power' AND count > 0
GROUP BY building_id, CAST(hour AS DATE);

CREATE OR REPLACE FUNCTION energy_ingest_notify_metadata() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('energy_ingest_metadata', TG_TABLE_NAME);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS energy_ingest_metadata_notify ON buildings;
CREATE TRIGGER energy_ingest_metadata_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON buildings
    FOR EACH STATEMENT EXECUTE FUNCTION energy_ingest_notify_metadata();
DROP TRIGGER IF EXISTS energy_ingest_metadata_notify ON tenants;
CREATE TRIGGER energy_ingest_metadata_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tenants
    FOR EACH STATEMENT EXECUTE FUNCTION energy_ingest_notify_metadata();
DROP TRIGGER IF EXISTS energy_ingest_metadata_notify ON alert_rules;
CREATE TRIGGER energy_ingest_metadata_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON alert_rules
    FOR EACH STATEMENT EXECUTE FUNCTION energy_ingest_notify_metadata();
DROP TRIGGER IF EXISTS energy_ingest_metadata_notify ON mqtt_devices;
CREATE TRIGGER energy_ingest_metadata_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON mqtt_devices
    FOR EACH STATEMENT EXECUTE FUNCTION energy_ingest_notify_metadata();
`,
  },
  {
    version: 3,
    name: 'roll-up progress per instance',
    sql: `
-- How far into its durable log each instance has added readings to
-- sensor_rollups_hourly. Updated in the same transaction as the roll-up rows,
-- so a replay after a crash never counts a reading twice.
CREATE TABLE IF NOT EXISTS energy_ingest_rollup_offsets (
    instance_id VARCHAR(64) PRIMARY KEY,
    log_offset BIGINT NOT NULL,
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
`,
  },
];

// One advisory lock key for every instance: two `migrate` runs never interleave.
const LOCK_KEY = 0x656e6572;

export interface MigrateResult {
  readonly applied: Array<{ version: number; name: string; ms: number }>;
  readonly current: number;
}

export async function migrate(
  url: string,
  progress: (line: string) => void = () => {},
  migrations = MIGRATIONS,
): Promise<MigrateResult> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  try {
    await client.connect();
  } catch (err) {
    throw new IngestError('EI_POSTGRES_UNREACHABLE', `PostgreSQL did not answer: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const applied: MigrateResult['applied'] = [];
  try {
    await client.query('SELECT pg_advisory_lock($1)', [LOCK_KEY]);
    await client.query(`CREATE TABLE IF NOT EXISTS energy_ingest_migrations (
      version INTEGER PRIMARY KEY,
      name TEXT NOT NULL,
      applied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)`);
    const done = new Set(
      (await client.query<{ version: number }>('SELECT version FROM energy_ingest_migrations')).rows.map(
        (r) => r.version,
      ),
    );
    for (const m of migrations) {
      if (done.has(m.version)) continue;
      const t0 = performance.now();
      progress(`migration ${m.version}: ${m.name} …`);
      try {
        await client.query('BEGIN');
        await client.query(m.sql);
        await client.query('INSERT INTO energy_ingest_migrations (version, name) VALUES ($1, $2)', [
          m.version,
          m.name,
        ]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        throw new IngestError(
          'EI_MIGRATION_FAILED',
          `migration ${m.version} (${m.name}) failed and was rolled back: ${(err as Error).message}`,
          {
            cause: err,
          },
        );
      }
      const ms = Math.round(performance.now() - t0);
      applied.push({ version: m.version, name: m.name, ms });
      progress(`migration ${m.version}: done in ${ms} ms`);
    }
    const current = Math.max(
      0,
      ...migrations.map((m) => m.version).filter((v) => done.has(v) || applied.some((a) => a.version === v)),
    );
    return { applied, current };
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [LOCK_KEY]).catch(() => {});
    await client.end().catch(() => {});
  }
}
