import pg from 'pg';
import { hashPassword } from '../broker/credentials.js';
import { IngestError } from '../errors.js';

/**
 * User names the daemon gives a meaning of its own: a device called "session"
 * is found before the Redis-session login (auth.redisSessions) of that name and
 * silently disables it (issue 18 item 9).
 */
export const RESERVED_DEVICE_NAMES: readonly string[] = ['session'];

async function readPiped(input: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of input) chunks.push(Buffer.from(c as Buffer));
  // one trailing newline is the terminal's, not the password's
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

/** What a terminal stream offers; process.stdin on a TTY. */
export interface TtyInput extends NodeJS.ReadableStream {
  isTTY?: boolean;
  setRawMode?: (raw: boolean) => unknown;
}

/**
 * One line typed on a terminal, read in raw mode so the terminal does not echo
 * it (the shell's cooked mode would show the password on screen and in
 * scrollback). Enter ends it, backspace deletes, Ctrl-C / Ctrl-D abort.
 */
export function readHiddenLine(
  input: TtyInput,
  output: NodeJS.WritableStream,
  prompt: string,
): Promise<string> {
  return new Promise((resolve, reject) => {
    let line = '';
    output.write(prompt);
    input.setRawMode!(true);
    const done = (err?: Error) => {
      input.removeListener('data', onData);
      input.setRawMode!(false);
      input.pause();
      output.write('\n');
      if (err) reject(err);
      else resolve(line);
    };
    const onData = (chunk: Buffer | string) => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return done();
        if (ch === '\u0003' || ch === '\u0004')
          return done(new IngestError('EI_CLI_USAGE', 'passwd: cancelled, nothing written'));
        if (ch === '\u007f' || ch === '\b') line = [...line].slice(0, -1).join('');
        else line += ch;
      }
    };
    input.on('data', onData);
    input.resume();
  });
}

/** From a terminal: twice, without echo. From a pipe: everything, as scripts give it. */
export async function readPassword(
  input: TtyInput = process.stdin,
  output: NodeJS.WritableStream = process.stderr,
): Promise<string> {
  if (!input.isTTY || typeof input.setRawMode !== 'function') return readPiped(input);
  const first = await readHiddenLine(input, output, 'Password: ');
  const again = await readHiddenLine(input, output, 'Password again: ');
  if (first !== again) throw new IngestError('EI_CLI_USAGE', 'the two passwords differ; nothing written');
  return first;
}

interface DeviceFields {
  role: string;
  building_id: number | null;
  enabled: boolean;
}

const where = (b: number | null) => (b === null ? 'all' : String(b));

/**
 * energy-ingest passwd: the password is read from stdin (without echo on a
 * terminal), hashed with scrypt (werkzeug format), never echoed or logged. An
 * existing device keeps every field it is not told to change: `enabled` always,
 * role and building unless --role / --building are given.
 */
export async function runPasswd(
  url: string,
  d: { username: string; role?: string; buildingId?: number },
): Promise<string> {
  if (RESERVED_DEVICE_NAMES.includes(d.username))
    throw new IngestError(
      'EI_CLI_USAGE',
      `"${d.username}" is reserved (the Redis-session login uses that user name); choose another device name`,
    );
  const password = await readPassword();
  if (password.length < 8)
    throw new IngestError('EI_CLI_USAGE', 'the password (read from stdin) must be at least 8 characters');
  const passwordHash = await hashPassword(password);
  const pool = new pg.Pool({ connectionString: url, max: 1, connectionTimeoutMillis: 10_000 });
  const client = await pool.connect().catch((err: Error) => {
    void pool.end();
    throw new IngestError('EI_POSTGRES_UNREACHABLE', `could not write mqtt_devices: ${err.message}`, {
      cause: err,
    });
  });
  try {
    await client.query('BEGIN');
    const old = (
      await client.query<DeviceFields>(
        'SELECT role, building_id, enabled FROM mqtt_devices WHERE username = $1 FOR UPDATE',
        [d.username],
      )
    ).rows[0];
    if (!old) {
      const role = d.role ?? 'sensor';
      const building = d.buildingId ?? null;
      if (role === 'sensor' && building === null) {
        // allowed by the contract (a sensor of every building) but worth saying
        process.stderr.write('note: a sensor without --building may publish for every building\n');
      }
      await client.query(
        'INSERT INTO mqtt_devices (username, password_hash, role, building_id) VALUES ($1, $2, $3, $4)',
        [d.username, passwordHash, role, building],
      );
      await client.query('COMMIT');
      return `created ${role} ${d.username}${building ? ` for building ${building}` : ''}`;
    }
    const role = d.role ?? old.role;
    const building = d.buildingId ?? old.building_id;
    await client.query(
      'UPDATE mqtt_devices SET password_hash = $2, role = $3, building_id = $4 WHERE username = $1',
      [d.username, passwordHash, role, building],
    );
    await client.query('COMMIT');
    const changed = ['password'];
    if (role !== old.role) changed.push(`role ${old.role} → ${role}`);
    if (building !== old.building_id) changed.push(`building ${where(old.building_id)} → ${where(building)}`);
    return (
      `updated ${role} ${d.username}${building ? ` for building ${building}` : ''} (changed: ${changed.join(', ')})` +
      (old.enabled ? '' : '; the device stays disabled')
    );
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw new IngestError(
      'EI_POSTGRES_UNREACHABLE',
      `could not write mqtt_devices: ${(err as Error).message}`,
      { cause: err },
    );
  } finally {
    client.release();
    await pool.end();
  }
}
