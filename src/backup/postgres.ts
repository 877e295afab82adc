import pg from 'pg';
import { IngestError } from '../errors.js';
import { MIGRATIONS, migrate } from '../metadata/migrations.js';
import { LineWriter, readLines } from './files.js';

// The system's tables (src/metadata/migrations.ts), parents before children
// so the inserts of a restore satisfy the foreign keys. energy_ingest_migrations
// is not copied: restore runs the migrations itself, which creates the schema
// in an empty database.
export const TABLES = [
  'users',
  'buildings',
  'tenants',
  'sensor_data',
  'alert_rules',
  'mqtt_devices',
  'sensor_rollups_hourly',
  // the roll-ups' log offsets, from the same snapshot as the roll-ups they describe
  'energy_ingest_rollup_offsets',
] as const;

const FETCH_ROWS = 5000;
const INSERT_ROWS = 2000;

export interface PostgresPart {
  schema_version: number;
  snapshot_at: string;
  tables: Record<string, { rows: number; file: string }>;
}

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    throw new IngestError('EI_POSTGRES_UNREACHABLE', `PostgreSQL did not answer: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return client;
}

/**
 * Every table in one REPEATABLE READ, READ ONLY transaction: all of them are
 * read from the same snapshot while the daemon keeps writing roll-ups. Rows
 * as row_to_json text (exact: numeric digits, float8 shortest-exact, ISO
 * timestamps), read through a cursor so a large table streams. `opened` is
 * called once the snapshot is taken.
 */
export async function dumpPostgres(
  url: string,
  dir: string,
  progress: (line: string) => void,
  opened: () => void = () => {},
): Promise<PostgresPart> {
  const client = await connect(url);
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await client.query("SET LOCAL DateStyle = 'ISO'; SET LOCAL TimeZone = 'UTC'");
    // the first query fixes the snapshot
    const at = await client.query<{ now: string }>('SELECT now()::text AS now');
    opened();
    const version = await client
      .query<{ v: number | null }>(
        "SELECT CASE WHEN to_regclass('energy_ingest_migrations') IS NULL THEN NULL ELSE (SELECT max(version) FROM energy_ingest_migrations) END AS v",
      )
      .then((r) => r.rows[0]?.v ?? 0);
    const part: PostgresPart = { schema_version: version, snapshot_at: at.rows[0]!.now, tables: {} };
    for (const table of TABLES) {
      const exists = await client.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [table]);
      if (!exists.rows[0]?.t) continue;
      const file = `postgres/${table}.jsonl.gz`;
      const out = await LineWriter.open(dir, file);
      try {
        await client.query(
          `DECLARE dump_cursor NO SCROLL CURSOR FOR SELECT row_to_json(t)::text AS j FROM "${table}" t`,
        );
        for (;;) {
          const r = await client.query<{ j: string }>(`FETCH ${FETCH_ROWS} FROM dump_cursor`);
          for (const row of r.rows) await out.write(row.j);
          if (r.rows.length < FETCH_ROWS) break;
          if (out.lines % (FETCH_ROWS * 20) === 0) progress(`postgres: ${table}: ${out.lines} rows …`);
        }
        await client.query('CLOSE dump_cursor');
      } finally {
        await out.close();
      }
      part.tables[table] = { rows: out.lines, file };
      progress(`postgres: ${table}: ${out.lines} rows`);
    }
    await client.query('COMMIT');
    return part;
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * Migrate (creates the schema in an empty database), then in ONE transaction:
 * TRUNCATE the backed-up tables and insert the set's rows
 * (json_populate_recordset casts each column from the dump's text), then move
 * every SERIAL sequence past the restored ids. Restoring the same set twice
 * leaves the same rows; a failure leaves the database as it was.
 */
export async function restorePostgres(
  url: string,
  dir: string,
  part: PostgresPart,
  progress: (line: string) => void,
): Promise<Record<string, number>> {
  const newest = Math.max(...MIGRATIONS.map((m) => m.version));
  if (part.schema_version > newest) {
    throw new IngestError(
      'EI_RESTORE_FAILED',
      `postgres: the set has schema version ${part.schema_version}, this energy-ingest knows up to ${newest}: restore it with a newer energy-ingest`,
    );
  }
  await migrate(url, (line) => progress(`postgres: ${line}`));
  const tables = TABLES.filter((t) => part.tables[t]);
  const client = await connect(url);
  const counts: Record<string, number> = {};
  try {
    await client.query('BEGIN');
    if (tables.length) await client.query(`TRUNCATE ${tables.map((t) => `"${t}"`).join(', ')}`);
    for (const table of tables) {
      let batch: string[] = [];
      let n = 0;
      const flush = async () => {
        if (!batch.length) return;
        await client.query(
          `INSERT INTO "${table}" SELECT * FROM json_populate_recordset(NULL::"${table}", $1::json)`,
          [`[${batch.join(',')}]`],
        );
        n += batch.length;
        batch = [];
      };
      for await (const line of readLines(`${dir}/${part.tables[table]!.file}`)) {
        batch.push(line);
        if (batch.length >= INSERT_ROWS) {
          await flush();
          if (n % (INSERT_ROWS * 25) === 0) progress(`postgres: ${table}: ${n} rows …`);
        }
      }
      await flush();
      const seq = await client.query<{ s: string | null }>(
        "SELECT pg_get_serial_sequence($1, 'id') AS s FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 AND column_name = 'id'",
        [table],
      );
      const s = seq.rows[0]?.s;
      if (s)
        await client.query(`SELECT setval($1, COALESCE((SELECT max(id) FROM "${table}"), 0) + 1, false)`, [
          s,
        ]);
      counts[table] = n;
      if (n !== part.tables[table]!.rows) {
        throw new IngestError(
          'EI_RESTORE_FAILED',
          `postgres: ${table}: restored ${n} rows, the manifest says ${part.tables[table]!.rows}`,
        );
      }
      progress(`postgres: ${table}: ${n} rows restored`);
    }
    await client.query('COMMIT');
    return counts;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    await client.end().catch(() => {});
  }
}
