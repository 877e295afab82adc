import { type ChildProcess, spawn } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { migrate } from '../../src/metadata/migrations.js';
import { mosquittoPub } from '../helpers/app.js';
import { type DaemonProcess, spawnDaemon } from '../helpers/daemon.js';
import { eventually, freePort, freshDatabase, tempDir } from '../helpers/services.js';

// Issue 18 item 6: everything under DATA_DIR is private (0600 files, 0700
// directories, whatever the umask), links planted in it are never followed,
// an unsafe DATA_DIR stops start-up, and an untrustworthy metadata.json is ignored.

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'energy-ingest.js');
/** runs the daemon under umask 022, the usual default that made every file 0644 */
const UMASK_022 = ['sh', '-c', 'umask 022 && exec "$@"', 'sh'];
const isRoot = process.getuid?.() === 0;

const started: DaemonProcess[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const d of started.splice(0)) {
    if (d.child.exitCode === null && d.child.signalCode === null) {
      d.child.kill('SIGKILL');
      await d.exited;
    }
  }
});
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function scratch(): string {
  const d = tempDir('perm');
  dirs.push(d);
  return d;
}

async function daemon(env: Record<string, string>): Promise<DaemonProcess> {
  const d = await spawnDaemon({ EI_PIPELINE_FLUSH_INTERVAL_MS: '100', ...env }, undefined, UMASK_022);
  started.push(d);
  return d;
}

/** Starts the daemon and waits (bounded) for it to exit by itself: for start-ups that must be refused. */
async function refusedStart(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  const child: ChildProcess = spawn(UMASK_022[0]!, [...UMASK_022.slice(1), 'node', BIN, 'start'], {
    env: {
      ...process.env,
      MQTT_PORT: String(await freePort()),
      HTTP_PORT: String(await freePort()),
      LOG_LEVEL: 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (b: Buffer) => {
    output += b.toString();
  });
  child.stderr!.on('data', (b: Buffer) => {
    output += b.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  const code = await exited;
  clearTimeout(timer);
  return { code, output };
}

/** every directory and file under root (root included), by lstat */
function walk(root: string): Array<{ path: string; dir: boolean; mode: number }> {
  const out: Array<{ path: string; dir: boolean; mode: number }> = [];
  const st = lstatSync(root);
  out.push({ path: root, dir: st.isDirectory(), mode: st.mode & 0o777 });
  if (st.isDirectory()) for (const name of readdirSync(root)) out.push(...walk(join(root, name)));
  return out;
}

const today = () => new Date().toISOString().slice(0, 10);

async function migratedDatabase(name: string): Promise<string> {
  const url = await freshDatabase(inject('postgresUrl'), name);
  await migrate(url);
  return url;
}

describe('DATA_DIR file modes (umask 022)', () => {
  let dbUrl: string;
  beforeAll(async () => {
    dbUrl = await migratedDatabase('perm_modes');
  });

  it('creates every directory 0700 and every file 0600, its own missing parents included', async () => {
    const base = scratch();
    const dataDir = join(base, 'var', 'energy');
    const d = await daemon({ DATA_DIR: dataDir, DATABASE_URL: dbUrl });
    await mosquittoPub(d.mqttPort, 'sensors/building_001/1/lobby/temperature', '21.5');
    await mosquittoPub(d.mqttPort, 'sensors/not-a-topic', '21.5');
    const expected = [
      join(dataDir, 'readings', `${today()}.lp`),
      join(dataDir, 'deadletter', `${today()}.jsonl`),
      join(dataDir, 'log', '00000000000000000000.seg'),
      join(dataDir, 'log', 'committed.influx'),
      join(dataDir, 'metadata.json'),
      join(dataDir, 'instance-id'),
      join(dataDir, 'alerts', 'journal.jsonl'),
    ];
    await eventually(async () => expected.every((p) => existsSync(p)), 15_000, 'every file written');
    d.child.kill('SIGTERM');
    expect((await d.exited).code).toBe(0);
    const entries = walk(dataDir);
    expect(entries.length).toBeGreaterThanOrEqual(expected.length + 5);
    const wrong = entries
      .filter((e) => e.mode !== (e.dir ? 0o700 : 0o600))
      .map((e) => `${e.path} ${e.mode.toString(8)}`);
    expect(wrong).toEqual([]);
    expect(statSync(join(base, 'var')).mode & 0o777).toBe(0o700);
  });

  it('tightens the files and directories an older version left 0644/0755', async () => {
    const dataDir = scratch();
    chmodSync(dataDir, 0o755);
    mkdirSync(join(dataDir, 'deadletter'), { mode: 0o755 });
    chmodSync(join(dataDir, 'deadletter'), 0o755);
    writeFileSync(join(dataDir, 'deadletter', `${today()}.jsonl`), '', { mode: 0o644 });
    chmodSync(join(dataDir, 'deadletter', `${today()}.jsonl`), 0o644);
    const d = await daemon({ DATA_DIR: dataDir });
    await mosquittoPub(d.mqttPort, 'sensors/not-a-topic', '1');
    await eventually(
      async () => readFileSync(join(dataDir, 'deadletter', `${today()}.jsonl`), 'utf8').length > 0,
      10_000,
      'dead letter written',
    );
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dataDir, 'deadletter')).mode & 0o777).toBe(0o700);
    expect(statSync(join(dataDir, 'deadletter', `${today()}.jsonl`)).mode & 0o777).toBe(0o600);
  });
});

describe('an unsafe DATA_DIR stops start-up', () => {
  it('world-writable: refused with EI_DATA_DIR_UNSAFE, exit 2, nothing created', async () => {
    const dataDir = scratch();
    chmodSync(dataDir, 0o777);
    const r = await refusedStart({ DATA_DIR: dataDir });
    expect(r.code).toBe(2);
    expect(r.output).toContain('EI_DATA_DIR_UNSAFE');
    expect(r.output).toContain(dataDir);
    expect(r.output).toMatch(/writable by group or others/);
    expect(readdirSync(dataDir)).toEqual([]);
  });

  it('group-writable: refused', async () => {
    const dataDir = scratch();
    chmodSync(dataDir, 0o770);
    const r = await refusedStart({ DATA_DIR: dataDir });
    expect(r.code).toBe(2);
    expect(r.output).toContain('EI_DATA_DIR_UNSAFE');
  });

  it.runIf(isRoot)('owned by another user: refused', async () => {
    const dataDir = scratch();
    chmodSync(dataDir, 0o700);
    chownSync(dataDir, 65534, 65534); // nobody
    const r = await refusedStart({ DATA_DIR: dataDir });
    expect(r.code).toBe(2);
    expect(r.output).toContain('EI_DATA_DIR_UNSAFE');
    expect(r.output).toMatch(/owned by uid 65534/);
  });
});

describe('links planted in DATA_DIR are never followed', () => {
  const SECRET = 'root-only content, must stay as it is\n';
  /** a file outside DATA_DIR that a planted link points to */
  function victim(): string {
    const p = join(scratch(), 'victim');
    writeFileSync(p, SECRET, { mode: 0o600 });
    return p;
  }

  it('a log segment linked to a file outside: start refused naming it, the target untouched', async () => {
    const dataDir = scratch();
    const target = victim();
    mkdirSync(join(dataDir, 'log'), { mode: 0o700 });
    const seg = join(dataDir, 'log', '00000000000000000000.seg');
    symlinkSync(target, seg);
    const r = await refusedStart({ DATA_DIR: dataDir });
    expect(readFileSync(target, 'utf8')).toBe(SECRET);
    expect(r.code).toBe(2);
    expect(r.output).toContain('EI_DATA_DIR_UNSAFE');
    expect(r.output).toContain(`${seg}: is a symbolic link`);
  });

  it('a dead-letter file linked to a file outside: start refused, the target untouched', async () => {
    const dataDir = scratch();
    const target = victim();
    mkdirSync(join(dataDir, 'deadletter'), { mode: 0o700 });
    symlinkSync(target, join(dataDir, 'deadletter', '2020-01-01.jsonl'));
    const r = await refusedStart({ DATA_DIR: dataDir });
    expect(readFileSync(target, 'utf8')).toBe(SECRET);
    expect(r.code).toBe(2);
    expect(r.output).toContain('2020-01-01.jsonl: is a symbolic link');
  });

  it("links planted while running (today's dead-letter and readings files): not written through, reported", async () => {
    const dataDir = scratch();
    const dlTarget = victim();
    const lpTarget = victim();
    const d = await daemon({ DATA_DIR: dataDir });
    symlinkSync(dlTarget, join(dataDir, 'deadletter', `${today()}.jsonl`));
    symlinkSync(lpTarget, join(dataDir, 'readings', `${today()}.lp`));
    await mosquittoPub(d.mqttPort, 'sensors/not-a-topic', 'x');
    await mosquittoPub(d.mqttPort, 'sensors/building_001/1/lobby/temperature', '21.5');
    await eventually(
      async () => {
        const m = await d.metrics();
        return (
          m.includes('op="dead_letter_append",code="EI_DATA_DIR_UNSAFE"') &&
          d.output().includes(`${join(dataDir, 'readings', `${today()}.lp`)}: is a symbolic link`)
        );
      },
      15_000,
      `both refusals reported\n${d.output()}`,
    );
    expect(d.output()).toContain(`${join(dataDir, 'deadletter', `${today()}.jsonl`)}: is a symbolic link`);
    expect(readFileSync(dlTarget, 'utf8')).toBe(SECRET);
    expect(readFileSync(lpTarget, 'utf8')).toBe(SECRET);
  });

  it('metadata.json.tmp linked to a file outside: the password hashes are not written there', async () => {
    const dbUrl = await migratedDatabase('perm_tmp_link');
    const dataDir = scratch();
    const target = victim();
    symlinkSync(target, join(dataDir, 'metadata.json.tmp'));
    const d = await daemon({ DATA_DIR: dataDir, DATABASE_URL: dbUrl });
    await eventually(async () => existsSync(join(dataDir, 'metadata.json')), 10_000, 'snapshot saved');
    expect(readFileSync(target, 'utf8')).toBe(SECRET);
    const st = lstatSync(join(dataDir, 'metadata.json'));
    expect(st.isFile()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(join(dataDir, 'metadata.json'), 'utf8')).source).toBe('postgres');
    d.child.kill('SIGTERM');
    await d.exited;
  });
});

describe('metadata.json is trusted only when it is the daemon’s own private file (PostgreSQL down at start)', () => {
  let deadDb: string;
  beforeAll(async () => {
    deadDb = `postgres://postgres@127.0.0.1:${await freePort()}/energy`; // nothing listens there
  });

  /** a tampered snapshot: an unknown building and an admin device */
  function plantSnapshot(dataDir: string): string {
    const path = join(dataDir, 'metadata.json');
    const snapshot = {
      source: 'postgres',
      loadedAt: new Date().toISOString(),
      buildings: [
        {
          id: 666,
          key: 'building_666',
          name: 'planted',
          address: '',
          total_area: null,
          floors: null,
          building_type: null,
          tenants: [],
        },
      ],
      alertRules: [],
      devices: [
        { id: 1, username: 'evil', password_hash: 'x', building_id: null, role: 'admin', enabled: true },
      ],
    };
    writeFileSync(path, JSON.stringify(snapshot), { mode: 0o600 });
    chmodSync(path, 0o600);
    return path;
  }

  async function buildingsSource(d: DaemonProcess): Promise<{ source: string; buildings: unknown[] }> {
    const res = await fetch(`http://127.0.0.1:${d.httpPort}/api/buildings`);
    return (await res.json()) as { source: string; buildings: unknown[] };
  }

  it('control: its own 0600 snapshot is used', async () => {
    const dataDir = scratch();
    plantSnapshot(dataDir);
    const d = await daemon({ DATA_DIR: dataDir, DATABASE_URL: deadDb });
    const b = await buildingsSource(d);
    expect(b.source).toBe('file');
    expect(b.buildings).toHaveLength(1);
  });

  it('mode 0666: ignored with a warning, started as if there were none', async () => {
    const dataDir = scratch();
    chmodSync(plantSnapshot(dataDir), 0o666);
    const d = await daemon({ DATA_DIR: dataDir, DATABASE_URL: deadDb });
    const b = await buildingsSource(d);
    expect(b.source).not.toBe('file');
    expect(b.buildings).toHaveLength(0);
    await eventually(async () => d.output().includes('metadata.json ignored'), 5000, 'warning logged');
    expect(d.output()).toMatch(/writable by group or others/);
  });

  it.runIf(isRoot)('owned by another user (nobody): ignored with a warning', async () => {
    const dataDir = scratch();
    chownSync(plantSnapshot(dataDir), 65534, 65534);
    const d = await daemon({ DATA_DIR: dataDir, DATABASE_URL: deadDb });
    const b = await buildingsSource(d);
    expect(b.source).not.toBe('file');
    expect(b.buildings).toHaveLength(0);
    await eventually(async () => d.output().includes('metadata.json ignored'), 5000, 'warning logged');
    expect(d.output()).toMatch(/owned by uid 65534/);
  });

  it('a link to a tampered file elsewhere: not followed, ignored', async () => {
    const dataDir = scratch();
    const elsewhere = scratch();
    const planted = plantSnapshot(elsewhere);
    symlinkSync(planted, join(dataDir, 'metadata.json'));
    const d = await daemon({ DATA_DIR: dataDir, DATABASE_URL: deadDb });
    const b = await buildingsSource(d);
    expect(b.source).not.toBe('file');
    expect(b.buildings).toHaveLength(0);
    await eventually(async () => d.output().includes('metadata.json ignored'), 5000, 'warning logged');
  });
});
