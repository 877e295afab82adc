import pg from 'pg';
import { hashPassword } from '../broker/credentials.js';
import { IngestError } from '../errors.js';
import { upsertDevice } from '../metadata/postgresStore.js';

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  // one trailing newline is the terminal's, not the password's
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

/** energy-ingest passwd: the password is read from stdin, hashed with scrypt (werkzeug format), never echoed or logged. */
export async function runPasswd(
  url: string,
  d: { username: string; role: string; buildingId: number | null },
): Promise<string> {
  const password = await readStdin();
  if (password.length < 8)
    throw new IngestError('EI_CLI_USAGE', 'the password (read from stdin) must be at least 8 characters');
  if (d.role === 'sensor' && d.buildingId === null) {
    // allowed by the contract (a sensor of every building) but worth saying
    process.stderr.write('note: a sensor without --building may publish for every building\n');
  }
  const pool = new pg.Pool({ connectionString: url, max: 1, connectionTimeoutMillis: 10_000 });
  try {
    const what = await upsertDevice(pool, {
      username: d.username,
      passwordHash: await hashPassword(password),
      role: d.role,
      buildingId: d.buildingId,
    });
    return `${what} ${d.role} ${d.username}${d.buildingId ? ` for building ${d.buildingId}` : ''}`;
  } catch (err) {
    throw new IngestError(
      'EI_POSTGRES_UNREACHABLE',
      `could not write mqtt_devices: ${(err as Error).message}`,
      { cause: err },
    );
  } finally {
    await pool.end();
  }
}
