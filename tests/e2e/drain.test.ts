import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DaemonProcess, spawnDaemon } from '../helpers/daemon.js';
import {
  eventually,
  freePort,
  influxQuery,
  type RestartableService,
  startInflux1,
  tempDir,
} from '../helpers/services.js';

// `energy-ingest drain --data-dir DIR` (contract sections 1 and 7) and the
// DATA_DIR lock (DIR/daemon.lock) it shares with the daemon, against a real
// InfluxDB 1.x and the built daemon.

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'energy-ingest.js');
let influx: RestartableService;
const children: ChildProcess[] = [];
const daemons: DaemonProcess[] = [];
beforeAll(async () => {
  influx = await startInflux1();
});
afterAll(async () => {
  for (const d of daemons) if (d.child.exitCode === null) d.child.kill('SIGKILL');
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await influx.stop();
});

function drain(
  dir: string,
  env: Record<string, string>,
  extra: string[] = [],
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      'node',
      [BIN, 'drain', '--data-dir', dir, ...extra],
      { env: { ...process.env, LOG_LEVEL: 'warn', ...env }, timeout: 60_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

async function publish(port: number, run: string, n: number): Promise<number> {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: `pub-${run}` });
  const base = Date.now() - 60_000;
  let acked = 0;
  for (let i = 0; i < n; i += 50) {
    await Promise.all(
      Array.from({ length: Math.min(50, n - i) }, (_, k) =>
        client
          .publishAsync(
            `sensors/building_001/${run}/r${(i + k) % 10}/power`,
            JSON.stringify({ value: i + k, timestamp: base + i + k }),
            { qos: 1 },
          )
          .then(() => acked++),
      ),
    );
  }
  await client.endAsync();
  return acked;
}

async function storedCount(db: string, run: string): Promise<number> {
  const q = `SELECT value FROM sensor_readings WHERE floor = '${run}'`;
  const rows = await influxQuery(influx.url, db, q).catch((err: Error) => {
    if (err.message.includes('database not found')) return []; // nothing was ever written there
    throw err;
  });
  return new Set(rows.map((r) => r.value)).size;
}

describe('energy-ingest drain --data-dir', { timeout: 90_000 }, () => {
  it('usage errors exit 2 naming the culprit', async () => {
    const missing = join(tempDir('drain-usage'), 'nope');
    const r1 = await drain(missing, {});
    expect(r1.code).toBe(2);
    expect(r1.stderr).toContain(`--data-dir ${missing}: no such directory`);
    const empty = tempDir('drain-empty');
    const r2 = await drain(empty, {});
    expect(r2.code).toBe(2);
    expect(r2.stderr).toContain('holds no durable log');
    const r3 = await drain(empty, {}, ['--give-up-after', '0']);
    expect(r3.code).toBe(2);
    expect(r3.stderr).toContain('--give-up-after must be at least 1');
    rmSync(empty, { recursive: true, force: true });
  });

  it('refuses the directory of a running daemon, and after its kill -9 writes every acknowledged reading once', async () => {
    const dir = tempDir('drain-a');
    const db = 'drain_a';
    const run = 'drain';
    // the node's InfluxDB never answers: every acknowledged reading waits in its log
    const dead = `http://127.0.0.1:${await freePort()}`;
    const d = await spawnDaemon({ DATA_DIR: dir, INFLUX_URL: dead, INFLUX_API: 'v1', INFLUX_DATABASE: db });
    daemons.push(d);
    const lock = JSON.parse(readFileSync(join(dir, 'daemon.lock'), 'utf8')) as { pid: number };
    expect(lock.pid).toBe(d.child.pid);
    expect(await publish(d.mqttPort, run, 600)).toBe(600);
    const env = { INFLUX_URL: influx.url, INFLUX_DATABASE: db, DATA_DIR: tempDir('drain-own') };

    const refused = await drain(dir, env);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('EI_DATA_DIR_LOCKED');
    expect(refused.stderr).toContain(`pid ${d.child.pid}`);
    expect(await storedCount(db, run)).toBe(0);

    d.child.kill('SIGKILL');
    await d.exited;
    const ok = await drain(dir, env);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stdout).toContain('taken over'); // the killed daemon's lock was stale
    expect(ok.stdout).toMatch(/drain: done: 600 points written/);
    expect(await storedCount(db, run)).toBe(600);

    // again: nothing left, nothing sent twice
    const again = await drain(dir, env);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('nothing unsent');

    // the drained directory is free again: a daemon starts on it and holds it
    const d2 = await spawnDaemon({ DATA_DIR: dir, INFLUX_URL: influx.url, INFLUX_DATABASE: db });
    daemons.push(d2);
    expect((JSON.parse(readFileSync(join(dir, 'daemon.lock'), 'utf8')) as { pid: number }).pid).toBe(
      d2.child.pid,
    );
    d2.child.kill('SIGTERM');
    expect((await d2.exited).code, d2.output()).toBe(0);
    expect(() => readFileSync(join(dir, 'daemon.lock'))).toThrow(); // released on stop
    expect(await storedCount(db, run)).toBe(600);
    rmSync(dir, { recursive: true, force: true });
  });

  it('a second daemon on a held DATA_DIR is refused; a lock whose pid now belongs to another process is taken over', async () => {
    const dir = tempDir('drain-b');
    const d = await spawnDaemon({ DATA_DIR: dir });
    daemons.push(d);
    const second = spawn('node', [BIN, 'start'], {
      env: {
        ...process.env,
        DATA_DIR: dir,
        MQTT_PORT: String(await freePort()),
        HTTP_PORT: String(await freePort()),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(second);
    let err = '';
    second.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    second.stdout!.on('data', (b: Buffer) => (err += b.toString()));
    const code = await new Promise<number | null>((r) => second.once('exit', (c) => r(c)));
    expect(code).not.toBe(0);
    expect(err).toContain('EI_DATA_DIR_LOCKED');
    d.child.kill('SIGKILL');
    await d.exited;

    // a pid reused by an unrelated live process (another start time): stale
    const sleeper = spawn('sleep', ['60']);
    children.push(sleeper);
    writeFileSync(
      join(dir, 'daemon.lock'),
      `${JSON.stringify({ pid: sleeper.pid, startTime: '1', command: 'energy-ingest start (node gone)' })}\n`,
      { mode: 0o600 },
    );
    const d2 = await spawnDaemon({ DATA_DIR: dir, LOG_LEVEL: 'warn' });
    daemons.push(d2);
    await eventually(async () => d2.output().includes('taken over'), 5000, 'stale lock logged');
    d2.child.kill('SIGTERM');
    expect((await d2.exited).code).toBe(0);
    sleeper.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('gives up with EI_DRAIN_INCOMPLETE when the sink does not answer, and a later drain completes', async () => {
    const dir = tempDir('drain-c');
    const db = 'drain_c';
    const run = 'drainc';
    const dead = `http://127.0.0.1:${await freePort()}`;
    const d = await spawnDaemon({ DATA_DIR: dir, INFLUX_URL: dead, INFLUX_API: 'v1', INFLUX_DATABASE: db });
    daemons.push(d);
    expect(await publish(d.mqttPort, run, 200)).toBe(200);
    d.child.kill('SIGKILL');
    await d.exited;
    const env = { INFLUX_API: 'v1', INFLUX_DATABASE: db, DATA_DIR: tempDir('drain-own-c') };
    const failed = await drain(
      dir,
      { ...env, INFLUX_URL: dead, EI_PIPELINE_RETRY_MIN_MS: '100', EI_PIPELINE_RETRY_MAX_MS: '500' },
      ['--give-up-after', '2'],
    );
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain('EI_DRAIN_INCOMPLETE');
    expect(failed.stderr).toMatch(/bytes of .* still unsent, run drain again/);
    const ok = await drain(dir, { ...env, INFLUX_URL: influx.url });
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(await storedCount(db, run)).toBe(200);
    rmSync(dir, { recursive: true, force: true });
  });
});
