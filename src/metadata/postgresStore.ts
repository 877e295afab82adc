import pg from 'pg';
import { canonicalBuildingKey } from '../ingest/building.js';
import type { AlertRuleRow, Building, DeviceRow, MetadataSnapshot, Tenant } from './snapshot.js';
import { inTransaction } from './transaction.js';

// Every SQL statement of the metadata feature, in one place. Parameterised only.

export const NOTIFY_CHANNEL = 'energy_ingest_metadata';

// DECIMAL and DATE come back as strings from pg by default: numbers and ISO dates are what callers want.
const NUMERIC = 1700;
const DATE = 1082;
export const pgTypes = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === NUMERIC) return (v: string) => (v === null ? null : Number(v));
    if (oid === DATE) return (v: string) => v;
    return pg.types.getTypeParser(oid, format);
  },
} as unknown as pg.CustomTypesConfig;

export async function loadSnapshot(pool: pg.Pool): Promise<MetadataSnapshot> {
  // one consistent view of the four tables
  return inTransaction(pool, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY', async (client) => {
    const buildings = await client.query<Omit<Building, 'key' | 'tenants'>>(
      'SELECT id, name, address, total_area, floors, building_type FROM buildings ORDER BY id',
    );
    const tenants = await client.query<Tenant>(
      'SELECT id, building_id, name, contact_info, move_in_date, contract_end_date FROM tenants ORDER BY id',
    );
    const rules = await client.query<AlertRuleRow>(
      `SELECT id, sensor_type, building_id, floor, room, above, below, hysteresis, for_seconds,
                offline_after_seconds, severity, message, enabled
         FROM alert_rules ORDER BY id`,
    );
    const devices = await client.query<DeviceRow>(
      'SELECT id, username, password_hash, building_id, role, enabled FROM mqtt_devices ORDER BY id',
    );
    const byBuilding = new Map<number, Tenant[]>();
    for (const t of tenants.rows) {
      if (t.building_id === null) continue;
      byBuilding.set(t.building_id, [...(byBuilding.get(t.building_id) ?? []), t]);
    }
    return {
      source: 'postgres',
      loadedAt: new Date().toISOString(),
      buildings: buildings.rows.map((b) => ({
        ...b,
        key: canonicalBuildingKey(b.id),
        tenants: byBuilding.get(b.id) ?? [],
      })),
      alertRules: rules.rows,
      devices: devices.rows,
    };
  });
}

export async function ping(pool: pg.Pool): Promise<void> {
  await pool.query('SELECT 1');
}

/** The system's users table, for MQTT logins by dashboard users and admins. */
export async function lookupUser(
  pool: pg.Pool,
  username: string,
): Promise<{ password_hash: string; role: string | null } | undefined> {
  const r = await pool.query<{ password_hash: string; role: string | null }>(
    'SELECT password_hash, role FROM users WHERE username = $1',
    [username],
  );
  return r.rows[0];
}

/** The users rows of these names, in one statement (re-checks of connected logins). */
export async function lookupUsers(
  pool: pg.Pool,
  names: readonly string[],
): Promise<Map<string, { password_hash: string; role: string | null }>> {
  const r = await pool.query<{ username: string; password_hash: string; role: string | null }>(
    'SELECT username, password_hash, role FROM users WHERE username = ANY($1::text[])',
    [names],
  );
  return new Map(r.rows.map((u) => [u.username, { password_hash: u.password_hash, role: u.role }]));
}

/** Create or replace one MQTT credential, enabled (tests' fixtures; `energy-ingest passwd` keeps unspecified fields). */
export async function upsertDevice(
  pool: pg.Pool,
  d: { username: string; passwordHash: string; role: string; buildingId: number | null },
): Promise<'created' | 'updated'> {
  const r = await pool.query<{ inserted: boolean }>(
    `INSERT INTO mqtt_devices (username, password_hash, role, building_id) VALUES ($1, $2, $3, $4)
     ON CONFLICT (username) DO UPDATE SET password_hash = EXCLUDED.password_hash, role = EXCLUDED.role,
       building_id = EXCLUDED.building_id, enabled = TRUE
     RETURNING (xmax = 0) AS inserted`,
    [d.username, d.passwordHash, d.role, d.buildingId],
  );
  return r.rows[0]?.inserted ? 'created' : 'updated';
}
