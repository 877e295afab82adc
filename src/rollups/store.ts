import type pg from 'pg';
import { inTransaction } from '../metadata/transaction.js';
import type { RollupRow } from './rollups.js';

// Every SQL statement of the roll-ups, in one place.

/**
 * One transaction: merge all rows with a single multi-row upsert (unnest of
 * parameter arrays) and record how far into its log this instance has
 * counted. Both commit together or not at all, which is what makes a replay
 * after a crash count nothing twice.
 */
export async function flushRollups(
  pool: pg.Pool,
  instanceId: string,
  rows: readonly RollupRow[],
  offset: number,
): Promise<void> {
  await inTransaction(pool, 'BEGIN', async (client) => {
    if (rows.length) {
      await client.query(
        `INSERT INTO sensor_rollups_hourly AS t (building_id, floor, room, sensor_type, hour, count, sum, min, max)
         SELECT * FROM unnest($1::int[], $2::varchar[], $3::varchar[], $4::varchar[], $5::timestamp[],
                              $6::bigint[], $7::float8[], $8::float8[], $9::float8[])
         ON CONFLICT (building_id, floor, room, sensor_type, hour) DO UPDATE SET
           count = t.count + EXCLUDED.count,
           sum = t.sum + EXCLUDED.sum,
           min = LEAST(t.min, EXCLUDED.min),
           max = GREATEST(t.max, EXCLUDED.max)`,
        [
          rows.map((r) => r.buildingId),
          rows.map((r) => r.floor),
          rows.map((r) => r.room),
          rows.map((r) => r.sensorType),
          rows.map((r) => new Date(r.hourMs).toISOString().replace('T', ' ').replace('Z', '')),
          rows.map((r) => r.count),
          rows.map((r) => r.sum),
          rows.map((r) => r.min),
          rows.map((r) => r.max),
        ],
      );
    }
    await client.query(
      `INSERT INTO energy_ingest_rollup_offsets (instance_id, log_offset, updated_at) VALUES ($1, $2, CURRENT_TIMESTAMP)
       ON CONFLICT (instance_id) DO UPDATE SET log_offset = EXCLUDED.log_offset, updated_at = EXCLUDED.updated_at`,
      [instanceId, offset],
    );
  });
}

export async function rollupOffset(pool: pg.Pool, instanceId: string): Promise<number | undefined> {
  const r = await pool.query<{ log_offset: string }>(
    'SELECT log_offset FROM energy_ingest_rollup_offsets WHERE instance_id = $1',
    [instanceId],
  );
  return r.rows[0] ? Number(r.rows[0].log_offset) : undefined;
}
