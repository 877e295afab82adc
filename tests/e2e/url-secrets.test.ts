import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mosquittoPub } from '../helpers/app.js';
import { type DaemonProcess, spawnDaemon } from '../helpers/daemon.js';
import { eventually, type RestartableService, startInflux1, tempDir } from '../helpers/services.js';

// Issue 18 item 1: credentials inside INFLUX_URL / DATABASE_URL / REDIS_URL never reach an
// answer, a log line or the CLI's output, and user:password@ in INFLUX_URL actually works.

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'energy-ingest.js');
const exec = promisify(execFile);
const SECRET = 'Sekr3t-XYZ';

async function cli(args: string[], env: Record<string, string>): Promise<{ code: number; out: string }> {
  try {
    const r = await exec('node', [BIN, ...args], { env: { ...process.env, ...env }, timeout: 30_000 });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, out: e.stdout + e.stderr };
  }
}

async function answers(d: DaemonProcess): Promise<{ ready: number; text: string }> {
  const base = `http://127.0.0.1:${d.httpPort}`;
  const r = await fetch(`${base}/ready`);
  const s = await fetch(`${base}/api/status`);
  return { ready: r.status, text: `${await r.text()}\n${await s.text()}` };
}

describe('secrets in service URLs', () => {
  const daemons: DaemonProcess[] = [];
  afterAll(() => {
    for (const d of daemons) if (d.child.exitCode === null) d.child.kill('SIGKILL');
  });

  describe('InfluxDB 1.x with authentication on, user:password@ in INFLUX_URL', () => {
    let influx: RestartableService;
    beforeAll(async () => {
      influx = await startInflux1({ user: 'writer', password: SECRET });
    }, 60_000);
    afterAll(async () => {
      await influx?.stop();
    });

    it('detects the server, writes with Basic auth, and shows the password nowhere', async () => {
      const db = `e2e_auth_${Date.now()}`;
      const url = `http://writer:${SECRET}@127.0.0.1:${influx.port}`;
      const d = await spawnDaemon({
        INFLUX_URL: url,
        INFLUX_DATABASE: db,
        DATA_DIR: tempDir('url-secrets'),
        LOG_LEVEL: 'info',
        EI_PIPELINE_FLUSH_INTERVAL_MS: '100',
      });
      daemons.push(d);
      await mosquittoPub(d.mqttPort, 'sensors/building_001/1/r1/temperature', '21.5');
      const rows = await eventually(
        async () => {
          const q = new URLSearchParams({ db, q: 'SELECT * FROM sensor_readings', u: 'writer', p: SECRET });
          const body = (await (await fetch(`${influx.url}/query?${q}`)).json()) as {
            results: Array<{ series?: Array<{ values: unknown[][] }> }>;
          };
          return body.results[0]?.series?.[0]?.values.length;
        },
        20_000,
        `point stored\n${d.output()}`,
      );
      expect(rows).toBe(1);
      const a = await answers(d);
      expect(a.ready).toBe(200);
      expect(a.text).not.toContain(SECRET);
      expect(d.output()).not.toContain(SECRET);
      const check = await cli(['check'], { INFLUX_URL: url, INFLUX_DATABASE: db, MQTT_PORT: '0' });
      expect(check.out).toMatch(/ok {4}influxdb/);
      expect(check.out).not.toContain(SECRET);
    }, 60_000);
  });

  it('an unreachable server: /ready, /api/status, check and the log never show a password', async () => {
    const env = {
      INFLUX_URL: `http://user:${SECRET}@127.0.0.1:1/`,
      INFLUX_API: 'v1',
      DATA_DIR: tempDir('url-secrets'),
      LOG_LEVEL: 'info',
    };
    const d = await spawnDaemon(env);
    daemons.push(d);
    // the readiness check has run against the dead server and kept its error
    const a = await eventually(
      async () => {
        const r = await answers(d);
        return r.ready === 503 && /"influxdb":\{"ok":false/.test(r.text) ? r : undefined;
      },
      20_000,
      'degraded /ready with a failed influxdb check',
    );
    expect(a.text).not.toContain(SECRET);
    expect(d.output()).toContain('127.0.0.1:1');
    expect(d.output()).not.toContain(SECRET);
    const check = await cli(['check'], {
      ...env,
      MQTT_PORT: '0',
      DATABASE_URL: `postgres://u@127.0.0.1:1/db?password=${SECRET}`,
      REDIS_URL: `redis://127.0.0.1:1/0?password=${SECRET}`,
    });
    expect(check.code).toBe(1);
    expect(check.out).toMatch(/FAIL +influxdb/);
    expect(check.out).toMatch(/FAIL +postgres/);
    expect(check.out).not.toContain(SECRET);
  }, 60_000);

  it('energy-ingest config hides ?password= in DATABASE_URL and REDIS_URL', async () => {
    const r = await cli(['config'], {
      DATABASE_URL: `postgres://u@h/db?password=${SECRET}`,
      REDIS_URL: `redis://h:6379/0?password=${SECRET}`,
    });
    expect(r.code).toBe(0);
    expect(r.out).toContain('postgres://u@h/db?password=');
    expect(r.out).not.toContain(SECRET);
  });
});
