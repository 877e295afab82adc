import { type ChildProcess, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// Throwaway servers for tests and benchmarks: each on free loopback ports, in
// its own temp dir, killed and removed by stop(). Never a server started by hand.

export interface Service {
  readonly name: string;
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `ei-${prefix}-`));
}

async function waitFor(
  check: () => Promise<boolean>,
  what: string,
  child: ChildProcess,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode} before it was ready`);
    try {
      if (await check()) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} was not ready within ${timeoutMs} ms`);
}

function stopper(child: ChildProcess, dir: string): () => Promise<void> {
  return async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
}

function collect(child: ChildProcess): () => string {
  let out = '';
  const keep = (b: Buffer) => {
    out = (out + b.toString()).slice(-20_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return () => out;
}

async function pingOk(url: string): Promise<boolean> {
  const res = await fetch(`${url}/ping`, { signal: AbortSignal.timeout(1000) });
  await res.body?.cancel();
  return res.status === 204 || res.status === 200;
}

export interface RestartableService extends Service {
  /** kill the server (SIGKILL: an outage, not a shutdown), keeping its data */
  crash(): Promise<void>;
  /** start it again on the same port with the same data */
  restart(): Promise<void>;
  /** freeze the process (SIGSTOP): connections stay open, nothing answers — a server that is slow, not down */
  pause(): void;
  /** SIGCONT after pause() */
  resume(): void;
}

/**
 * A server process that a test may crash and restart on the same port with
 * the same data. `spawnServer` starts one process; `ready` says when it serves.
 */
async function restartableServer(o: {
  name: string;
  url: string;
  port: number;
  dir: string;
  spawnServer: () => ChildProcess;
  ready: () => Promise<boolean>;
  crashSignal: NodeJS.Signals;
}): Promise<RestartableService> {
  let child: ChildProcess | undefined;
  const alive = () => child !== undefined && child.exitCode === null && child.signalCode === null;
  const launch = async () => {
    if (alive()) return;
    const c = o.spawnServer();
    child = c;
    const output = collect(c);
    try {
      await waitFor(o.ready, o.name, c);
    } catch (err) {
      await stopper(c, o.dir)();
      throw new Error(`${(err as Error).message}\n${output()}`);
    }
  };
  await launch();
  return {
    name: o.name,
    url: o.url,
    port: o.port,
    dir: o.dir,
    stop: () => stopper(child!, o.dir)(),
    async crash() {
      const c = child!;
      if (!alive()) return;
      const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
      c.kill(o.crashSignal);
      await exited;
    },
    restart: launch,
    pause: () => child?.kill('SIGSTOP'),
    resume: () => child?.kill('SIGCONT'),
  };
}

/**
 * InfluxDB 1.x (Debian package `influxdb`), speaking the v1 /write API. With `auth`, HTTP
 * authentication is on and that user is created as the admin (allowed while no user exists).
 */
export async function startInflux1(auth?: { user: string; password: string }): Promise<RestartableService> {
  const dir = tempDir('influx1');
  const [httpPort, bindPort] = [await freePort(), await freePort()];
  const conf = join(dir, 'influxdb.conf');
  writeFileSync(
    conf,
    `reporting-disabled = true
bind-address = "127.0.0.1:${bindPort}"
[meta]
  dir = "${dir}/meta"
[data]
  dir = "${dir}/data"
  wal-dir = "${dir}/wal"
  query-log-enabled = false
  cache-max-memory-size = "1g"
[coordinator]
  log-queries-after = "0s"
[http]
  bind-address = "127.0.0.1:${httpPort}"
  auth-enabled = ${auth ? 'true' : 'false'}
  log-enabled = false
  max-body-size = 0
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
`,
  );
  const url = `http://127.0.0.1:${httpPort}`;
  const server = await restartableServer({
    name: 'influxd',
    url,
    port: httpPort,
    dir,
    spawnServer: () => spawn('influxd', ['-config', conf], { stdio: ['ignore', 'pipe', 'pipe'] }),
    ready: () => pingOk(url),
    crashSignal: 'SIGKILL',
  });
  if (auth) {
    const q = `CREATE USER "${auth.user}" WITH PASSWORD '${auth.password}' WITH ALL PRIVILEGES`;
    const res = await fetch(`${url}/query`, { method: 'POST', body: new URLSearchParams({ q }) });
    const body = await res.text();
    if (!res.ok || body.includes('"error"')) {
      await server.stop();
      throw new Error(`influxd: creating the admin user failed: ${res.status} ${body}`);
    }
  }
  return server;
}

/** VictoriaMetrics: a real server speaking InfluxDB's v2 /api/v2/write. */
export async function startVictoria(): Promise<Service> {
  const dir = tempDir('vm');
  const port = await freePort();
  const child = spawn(
    'victoria-metrics',
    [
      `-storageDataPath=${dir}`,
      `-httpListenAddr=127.0.0.1:${port}`,
      '-loggerLevel=ERROR',
      '-retentionPeriod=100y',
      // make freshly written samples searchable at once
      '-search.latencyOffset=0s',
      '-search.disableCache',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const output = collect(child);
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(
      async () => {
        const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) });
        return (await res.text()).trim() === 'OK';
      },
      'victoria-metrics',
      child,
    );
  } catch (err) {
    await stopper(child, dir)();
    throw new Error(`${(err as Error).message}\n${output()}`);
  }
  return { name: 'victoria-metrics', url, port, dir, stop: stopper(child, dir) };
}

/** Run an InfluxQL query against InfluxDB 1.x and return the first series' rows as objects. */
export async function influxQuery(url: string, db: string, q: string): Promise<Record<string, unknown>[]> {
  const res = await fetch(`${url}/query?${new URLSearchParams({ db, q, epoch: 'ms' })}`);
  const body = (await res.json()) as {
    results: Array<{ error?: string; series?: Array<{ columns: string[]; values: unknown[][] }> }>;
  };
  const r = body.results[0];
  if (r?.error) throw new Error(r.error);
  const rows: Record<string, unknown>[] = [];
  for (const s of r?.series ?? []) {
    for (const v of s.values) rows.push(Object.fromEntries(s.columns.map((c, i) => [c, v[i]])));
  }
  return rows;
}

/**
 * True when every row holds each of `fields`. InfluxDB keeps each field of a
 * point on its own, so a query racing the write can see a point's row with
 * some fields and not yet others (`value` missing: seen in CI). Tests wait for
 * whole points before they compare.
 */
export function wholePoints(
  rows: readonly Record<string, unknown>[],
  fields: readonly string[] = ['value', 'unit', 'status'],
): boolean {
  return rows.every((r) => fields.every((f) => r[f] !== null && r[f] !== undefined));
}

/** Every sample of `metric` that VictoriaMetrics holds, with its labels. */
export async function victoriaExport(
  url: string,
  match: string,
): Promise<Array<{ metric: Record<string, string>; values: number[]; timestamps: number[] }>> {
  // make freshly ingested samples searchable now rather than after the periodic flush
  await (await fetch(`${url}/internal/force_flush`)).body?.cancel();
  const res = await fetch(`${url}/api/v1/export?${new URLSearchParams({ 'match[]': match, start: '0' })}`);
  const text = await res.text();
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

export async function eventually<T>(
  fn: () => Promise<T | undefined | false>,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} not reached within ${timeoutMs} ms${last ? `: ${(last as Error).message}` : ''}`);
}

/** Debian keeps PostgreSQL's server binaries outside PATH. */
function pgBin(name: string): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).sort((a, b) => Number(b) - Number(a)) : [];
  for (const v of versions) {
    const p = join(root, v, 'bin', name);
    if (existsSync(p)) return p;
  }
  return name;
}

/** initdb and postgres refuse to run as root: when we are root, run them as the packaged postgres user. */
async function postgresUser(): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const { execFileSync } = await import('node:child_process');
  return {
    uid: Number(execFileSync('id', ['-u', 'postgres']).toString().trim()),
    gid: Number(execFileSync('id', ['-g', 'postgres']).toString().trim()),
  };
}

/** A throwaway PostgreSQL (Debian package `postgresql`) with trust auth on loopback. */
export async function startPostgres(): Promise<RestartableService> {
  const dir = tempDir('pg');
  const port = await freePort();
  const user = await postgresUser();
  if (user) chownSync(dir, user.uid, user.gid);
  const data = join(dir, 'data');
  const { execFileSync } = await import('node:child_process');
  execFileSync(
    pgBin('initdb'),
    ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C'],
    {
      stdio: 'pipe',
      ...user,
    },
  );
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const args = ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1'];
  // throwaway data: no fsync (a killed server still finds its WAL in the page cache;
  // synchronous_commit stays on, or a crash test would lose committed rows)
  args.push('-c', 'fsync=off', '-c', 'full_page_writes=off');
  const pg = await import('pg');
  return restartableServer({
    name: 'postgres',
    url,
    port,
    dir,
    spawnServer: () => spawn(pgBin('postgres'), args, { stdio: ['ignore', 'pipe', 'pipe'], ...user }),
    async ready() {
      const c = new pg.default.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
      await c.connect();
      await c.end();
      return true;
    },
    // immediate shutdown, no checkpoint: the closest to a crash that leaves no orphan processes
    crashSignal: 'SIGQUIT',
  });
}

/** A throwaway Redis (Debian package `redis-server`), no persistence. */
export async function startRedis(): Promise<RestartableService> {
  const dir = tempDir('redis');
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  return restartableServer({
    name: 'redis-server',
    url,
    port,
    dir,
    spawnServer: () =>
      spawn(
        'redis-server',
        ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      ),
    ready: () =>
      new Promise<boolean>((resolve) => {
        const sock = createConnection(port, '127.0.0.1');
        sock.once('connect', () => {
          sock.end('PING\r\n');
          resolve(true);
        });
        sock.once('error', () => resolve(false));
      }),
    crashSignal: 'SIGKILL',
  });
}

/**
 * A new, empty database on a test PostgreSQL (dropped first if an earlier run
 * left it behind); its URL. Schema-level tests migrate it themselves.
 */
export async function freshDatabase(adminUrl: string, name: string): Promise<string> {
  const pg = await import('pg');
  const admin = new pg.default.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${name}`);
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  return adminUrl.replace(/\/postgres$/, `/${name}`);
}
