import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { mosquittoPub } from '../helpers/app.js';
import { eventually, freePort, freshDatabase, tempDir } from '../helpers/services.js';

// The bin as users run it (built by `npm test` before vitest starts).
const BIN = join(import.meta.dirname, '..', '..', 'bin', 'energy-ingest.js');
const exec = promisify(execFile);

async function cli(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await exec('node', [BIN, ...args], { env: { ...process.env, ...env }, timeout: 30_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** `cli` with `input` on stdin (a pipe, as scripts use it). */
function cliIn(
  args: string[],
  env: Record<string, string>,
  input: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      'node',
      [BIN, ...args],
      { env: { ...process.env, ...env }, timeout: 30_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
    child.stdin!.end(input);
  });
}

const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

/** a config file holding `yaml`, in a fresh directory */
function configFile(yaml: string): string {
  const file = join(tempDir('cli-config'), 'config.yaml');
  writeFileSync(file, yaml);
  return file;
}

describe('energy-ingest CLI', () => {
  it('config prints YAML with secrets redacted', async () => {
    const r = await cli(['config'], {
      INFLUX_TOKEN: 'tok-XYZ',
      INFLUX_URL: 'http://u:pw-XYZ@127.0.0.1:8086',
      REDIS_URL: 'redis://:rpw@h:6379',
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^mqtt:\n {2}host: 127\.0\.0\.1\n {2}port: 1883/);
    expect(r.stdout).toContain('token: "***"');
    expect(r.stdout).not.toMatch(/tok-XYZ|pw-XYZ|rpw/);
  });

  it.each([
    [['start', '--bogus'], {}, /unknown option --bogus/],
    [['start', '--config', '/nonexistent.yaml'], {}, /cannot read config file \/nonexistent\.yaml/],
    [['frobnicate'], {}, /unknown command "frobnicate"/],
    [['start'], { MQTT_PORT: 'abc' }, /mqtt\.port \(env MQTT_PORT\): must be an integer/],
    [['simulate', '--qos', '3'], {}, /--qos must be at most 2/],
    [
      ['start'],
      {
        EI_AUTH_REDIS_SESSIONS: 'true',
        REDIS_URL: '',
        MQTT_PORT: '0',
        HTTP_PORT: '0',
        DATA_DIR: tempDir('cli-redis-sessions'),
      },
      /invalid configuration:\n {2}auth\.redisSessions: needs REDIS_URL/,
    ],
    [
      // issue 18 item 7: a rule id is an MQTT topic level; `a/#` would publish to a wildcard topic
      [
        'start',
        '--config',
        configFile('alerts:\n  rules:\n    - { id: "a/#", sensor_type: power, above: 1 }\n'),
      ],
      { MQTT_PORT: '0', HTTP_PORT: '0', DATA_DIR: tempDir('cli-rule-id') },
      /invalid configuration:\n {2}alerts\.rules\[0\]\.id: "a\/#" is not a valid rule id: 1 to 64 characters from A-Z a-z 0-9 _ \. : -/,
    ],
  ] as const)('%j exits 2 naming the culprit', async (args, env, message) => {
    const r = await cli([...args], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
  });

  it('migrate creates the schema, a second run changes nothing, and it needs DATABASE_URL', async () => {
    const url = await freshDatabase(inject('postgresUrl'), 'cli_migrate');
    const first = await cli(['migrate'], { DATABASE_URL: url });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/migration 3: done in \d+ ms\nschema at version 3 \(3 applied\)/);
    const second = await cli(['migrate'], { DATABASE_URL: url });
    expect(second.stdout.trim()).toBe('schema at version 3: nothing to do');
    const none = await cli(['migrate'], { DATABASE_URL: '' });
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/migrate needs DATABASE_URL/);
  });

  it('passwd keeps what it is not told to change, says what changed, and refuses reserved names', async () => {
    const url = await freshDatabase(inject('postgresUrl'), 'cli_passwd');
    expect((await cli(['migrate'], { DATABASE_URL: url })).code).toBe(0);
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    try {
      await db.query(`INSERT INTO buildings (id, name, address) VALUES (3, 'C', 'Seoul'), (4, 'D', 'Seoul')`);
      const row = async (u: string) =>
        (
          await db.query(
            'SELECT password_hash, role, building_id, enabled FROM mqtt_devices WHERE username = $1',
            [u],
          )
        ).rows[0];
      const made = await cliIn(
        ['passwd', 'meter-7', '--building', '3'],
        { DATABASE_URL: url },
        'first-pass-7\n',
      );
      expect(made.code, made.stderr).toBe(0);
      const before = await row('meter-7');
      expect(before).toMatchObject({ role: 'sensor', building_id: 3, enabled: true });
      // an operator disabled it; a password reset must not silently re-enable it nor widen it to every building
      await db.query(`UPDATE mqtt_devices SET enabled = FALSE WHERE username = 'meter-7'`);
      const reset = await cliIn(['passwd', 'meter-7'], { DATABASE_URL: url }, 'second-pass-7\n');
      expect(reset.code, reset.stderr).toBe(0);
      const after = await row('meter-7');
      expect(after).toMatchObject({ role: 'sensor', building_id: 3, enabled: false });
      expect(after.password_hash).not.toBe(before.password_hash);
      expect(reset.stdout).toMatch(/password/);
      expect(reset.stdout).toMatch(/disabled/);
      expect(reset.stdout).not.toMatch(/role|building \d+ →/);
      // a given field changes and is named
      const moved = await cliIn(
        ['passwd', 'meter-7', '--building', '4'],
        { DATABASE_URL: url },
        'third-pass-7\n',
      );
      expect(moved.code, moved.stderr).toBe(0);
      expect(moved.stdout).toMatch(/building 3 → 4/);
      expect(await row('meter-7')).toMatchObject({ role: 'sensor', building_id: 4, enabled: false });
      // "session" is the Redis-session login's user name: a device by that name would shadow it
      const reserved = await cliIn(
        ['passwd', 'session', '--role', 'admin'],
        { DATABASE_URL: url },
        'session-pass\n',
      );
      expect(reserved.code).toBe(2);
      expect(reserved.stderr).toMatch(/"session" is reserved/);
      expect(await row('session')).toBeUndefined();
    } finally {
      await db.end();
    }
  });

  it('passwd does not echo the password on a terminal', async () => {
    const url = await freshDatabase(inject('postgresUrl'), 'cli_passwd_tty');
    expect((await cli(['migrate'], { DATABASE_URL: url })).code).toBe(0);
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    await db
      .query(`INSERT INTO buildings (id, name, address) VALUES (2, 'B', 'Seoul')`)
      .finally(() => db.end());
    // script(1) gives the command a pseudo-terminal; what it prints is what the terminal shows
    const child = spawn('script', ['-qec', `node ${BIN} passwd tty-meter --building 2`, '/dev/null'], {
      env: { ...process.env, DATABASE_URL: url },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    children.push(child);
    let out = '';
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString('utf8');
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    // typed once the prompt shows (or after 5 s without one: the terminal then echoes whatever it gets)
    const prompted = (n: number) =>
      eventually(async () => (out.match(/password/gi) ?? []).length >= n, 5_000).catch(() => undefined);
    await prompted(1);
    child.stdin!.write('tty-secret-42\r');
    await prompted(2);
    child.stdin!.write('tty-secret-42\r');
    const code = await Promise.race([exited, new Promise<null>((r) => setTimeout(() => r(null), 10_000))]);
    if (code === null) child.kill('SIGKILL');
    expect(out).not.toContain('tty-secret-42');
    expect(code, out).toBe(0);
    expect(out).toMatch(/created sensor tty-meter for building 2/);
  });

  it('check prints one line per service and fails when one does not answer', async () => {
    const ok = await cli(['check'], { MQTT_PORT: '0', DATA_DIR: tempDir('check') });
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/^ok +mqtt .* \d+ ms/m);
    expect(ok.stdout).toMatch(/^ok +file-sink/m);
    const influx = await cli(['check'], {
      MQTT_PORT: '0',
      INFLUX_URL: inject('influx1Url'),
      INFLUX_DATABASE: 'check_db',
    });
    expect(influx.stdout).toMatch(/^ok +influxdb .* \d+ ms \(influxdb-v1\)/m);
    expect(influx.code, influx.stdout + influx.stderr).toBe(0);
    const all = await cli(['check'], {
      MQTT_PORT: '0',
      INFLUX_URL: inject('influx1Url'),
      INFLUX_DATABASE: 'check_db',
      DATABASE_URL: inject('postgresUrl'),
      REDIS_URL: inject('redisUrl'),
    });
    expect(all.stdout, all.stdout).toMatch(
      /^ok +postgres +postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres \d+ ms/m,
    );
    expect(all.stdout).toMatch(/^ok +redis +redis:\/\/127\.0\.0\.1:\d+ \d+ ms \(PING PONG\)/m);
    expect(all.stdout.trim().split('\n')).toHaveLength(4);
    expect(all.code, all.stdout + all.stderr).toBe(0);
    const deadRedis = await cli(['check'], {
      MQTT_PORT: '0',
      REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
    });
    expect(deadRedis.code).toBe(1);
    expect(deadRedis.stdout).toMatch(/^FAIL +redis/m);
    const bad = await cli(['check'], {
      MQTT_PORT: '0',
      INFLUX_URL: `http://127.0.0.1:${await freePort()}`,
    });
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/^FAIL +influxdb/m);
  });

  it('start runs on the embedded defaults, simulate feeds it, SIGTERM exits 0 with everything flushed', async () => {
    const dataDir = tempDir('cli');
    const [mqttPort, httpPort] = [await freePort(), await freePort()];
    const child = spawn('node', [BIN, 'start'], {
      env: { ...process.env, MQTT_PORT: String(mqttPort), HTTP_PORT: String(httpPort), DATA_DIR: dataDir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let logs = '';
    child.stdout!.on('data', (b) => {
      logs += b;
    });
    await eventually(
      async () => (await fetch(`http://127.0.0.1:${httpPort}/health`)).status === 200,
      15_000,
      'daemon up',
    );
    // pino writes stdout asynchronously: the line may come just after /health answers
    await eventually(async () => logs.includes('energy-ingest started'), 10_000, 'started line');
    expect(JSON.parse(logs.split('\n').find((l) => l.includes('energy-ingest started'))!)).toMatchObject({
      level: 30,
      anonymous: true,
    });

    await mosquittoPub(mqttPort, 'sensors/building_001/1/r1/temperature', '22.5');
    const sim = await cli([
      'simulate',
      '--url',
      `mqtt://127.0.0.1:${mqttPort}`,
      '--buildings',
      '2',
      '--floors',
      '2',
      '--rooms',
      '2',
      '--types',
      'temperature,power',
      '--interval-ms',
      '200',
      '--duration-s',
      '1.5',
      '--qos',
      '1',
      '--bad-rate',
      '0.1',
    ]);
    expect(sim.code).toBe(0);
    const summary = JSON.parse(sim.stdout.trim().split('\n').at(-1)!);
    expect(summary).toMatchObject({ series: 16, qos: 1, errors: 0 });
    expect(summary.sent).toBeGreaterThanOrEqual(16 * 7);
    expect(summary.acked).toBe(summary.sent);
    expect(sim.stderr).toMatch(/^sent=\d+ acked=\d+ rate=\d+\/s errors=0/m);

    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    const readings = readdirSync(join(dataDir, 'readings'))
      .map((f) => readFileSync(join(dataDir, 'readings', f), 'utf8'))
      .join('');
    const dead = readdirSync(join(dataDir, 'deadletter'))
      .map((f) => readFileSync(join(dataDir, 'deadletter', f), 'utf8'))
      .join('');
    const lines = readings.split('\n').filter(Boolean).length;
    const rejected = dead.split('\n').filter(Boolean).length;
    expect(lines + rejected).toBe(summary.sent + 1);
    expect(rejected).toBe(summary.bad_sent);
  });
});
