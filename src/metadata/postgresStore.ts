import pg from 'pg';
import { canonicalBuildingKey } from '../ingest/building.js';
import type { AlertRuleRow, Building, DeviceRow, MetadataSnapshot, Tenant } from './snapshot.js';

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
  const client = await pool.connect();
  try {
    // one consistent view of the four tables
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
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
    await client.query('COMMIT');
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
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

export async function ping(pool: pg.Pool): Promise<void> {
  await pool.query('SELECT 1');
}
