import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import mqttPacket from 'mqtt-packet';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/broker/credentials.js';
import { migrate } from '../../src/metadata/migrations.js';
import { type DaemonProcess, metricValue, spawnDaemon } from '../helpers/daemon.js';
import { connectPacket } from '../helpers/rawMqtt.js';
import {
  eventually,
  freshDatabase,
  type RestartableService,
  startPostgres,
  startRedis,
  tempDir,
} from '../helpers/services.js';

// Issue 18 items 4 (logins under database faults) and 10 (account enumeration),
// against a PostgreSQL of this file's own (it gets locked and frozen).
// Login look-ups used to share the metadata pool (2 connections): random user
// names behind a lock on `users` starved the metadata reload; a frozen
// PostgreSQL left a `users` login without any answer for 40 s.

const LOOKUP_TIMEOUT_MS = 1500;

/** The CONNACK return code for one login (undefined: no CONNACK within waitMs) and how long it took. */
async function login(
  port: number,
  username: string,
  password: string,
  waitMs = 15_000,
): Promise<{ code: number | undefined; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const socket = netConnect(port, '127.0.0.1');
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    const finish = (code: number | undefined) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ code, ms: Date.now() - t0 });
    };
    // the answer is the CONNACK: an accepted login is not kept open
    parser.on('packet', (p) => {
      if (p.cmd === 'connack') finish((p as { returnCode?: number }).returnCode);
    });
    socket.on('data', (d) => parser.parse(d));
    socket.on('close', () => finish(undefined));
    socket.on('error', () => finish(undefined));
    socket.write(
      mqttPacket.generate(
        connectPacket(`c-${randomBytes(4).toString('hex')}`, { username, password: Buffer.from(password) }),
      ),
    );
    const timer = setTimeout(() => finish(undefined), waitMs);
  });
}

/**
 * Freeze the whole server: the postmaster and every backend it forked
 * (SIGSTOP on the postmaster alone leaves open connections answering).
 */
function freeze(pgs: RestartableService, signal: 'SIGSTOP' | 'SIGCONT'): void {
  const postmaster = Number(readFileSync(join(pgs.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
  const pids = [postmaster];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      // the field after the parenthesised command name is the state, then the parent pid
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === postmaster) pids.push(Number(e));
    } catch {
      // gone meanwhile
    }
  }
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // gone meanwhile
    }
  }
}

const metric = async (d: DaemonProcess, name: string) => {
  const v = metricValue(await d.metrics(), name);
  return Number.isNaN(v) ? 0 : v;
};

describe('logins under PostgreSQL faults, and alike answers for every refused name', () => {
  let pgs: RestartableService;
  let url: string;
  let d: DaemonProcess;
  let dir: string;

  beforeAll(async () => {
    pgs = await startPostgres();
    url = await freshDatabase(pgs.url, 'login_faults');
    await migrate(url);
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    try {
      await db.query(`INSERT INTO buildings (id, name, address) VALUES (1, 'A', 'a')`);
      const h = await hashPassword('s3nsor-pass');
      for (const name of ['sensor-1', 'sensor-2', 'sensor-off'])
        await db.query(
          `INSERT INTO mqtt_devices (username, password_hash, role, building_id, enabled) VALUES ($1, $2, 'sensor', 1, $3)`,
          [name, h, name !== 'sensor-off'],
        );
      // a row whose hash is not a werkzeug hash at all (e.g. locked by hand)
      await db.query(
        `INSERT INTO mqtt_devices (username, password_hash, role, building_id, enabled) VALUES ('sensor-locked', '!', 'sensor', 1, false)`,
      );
      await db.query(
        `INSERT INTO users (username, email, password_hash, role) VALUES ('ops', 'ops@energy.com', $1, 'user')`,
        [await hashPassword('hunter2')],
      );
    } finally {
      await db.end();
    }
    dir = tempDir('login-faults');
    d = await spawnDaemon({
      DATABASE_URL: url,
      ALLOW_ANONYMOUS: 'false',
      DATA_DIR: dir,
      // what is measured here is the login path, not the per-address limits in front of it
      EI_MQTT_CONNECT_RATE_PER_IP: '1000000',
      EI_AUTH_FAILED_LOGIN_BURST: '1000',
      EI_AUTH_MAX_FAILED_LOGINS_PER_MINUTE: '1000000',
      EI_AUTH_MAX_FAILED_LOGINS_PER_USER_PER_MINUTE: '1000000',
      EI_AUTH_LOGIN_LOOKUP_TIMEOUT_MS: String(LOOKUP_TIMEOUT_MS),
    });
    expect((await login(d.mqttPort, 'sensor-2', 's3nsor-pass')).code).toBe(0);
  }, 60_000);

  afterAll(async () => {
    if (d && d.child.exitCode === null) d.child.kill('SIGKILL');
    await d?.exited;
    if (pgs) freeze(pgs, 'SIGCONT');
    await pgs?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('random user names behind a lock on users get CONNACK 0x03 and do not starve the metadata reload', async () => {
    const locker = new pg.Client({ connectionString: url });
    await locker.connect();
    const answers: Array<Promise<{ code: number | undefined; ms: number }>> = [];
    let flooding = true;
    let results: Array<{ code: number | undefined; ms: number }> = [];
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE users IN ACCESS EXCLUSIVE MODE');
      // five CONNECTs a second with names nobody has, for the whole test
      const flood = (async () => {
        while (flooding) {
          answers.push(login(d.mqttPort, `rnd-${randomBytes(6).toString('hex')}`, 'x', 25_000));
          await new Promise((r) => setTimeout(r, 200));
        }
      })();
      await new Promise((r) => setTimeout(r, 3000));
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      try {
        // the trigger NOTIFYs; the reload must get a connection although logins keep failing
        await admin.query(`UPDATE mqtt_devices SET enabled = FALSE WHERE username = 'sensor-2'`);
      } finally {
        await admin.end();
      }
      await eventually(
        async () => (await login(d.mqttPort, 'sensor-2', 's3nsor-pass', 5000)).code === 5,
        12_000,
        'the disabled device refused',
      );
      flooding = false;
      await flood;
      // every answer while the lock still holds: a look-up after it would find nothing and say 0x04
      results = await Promise.all(answers);
    } finally {
      flooding = false;
      await locker.query('ROLLBACK').catch(() => {});
      await locker.end();
    }
    expect(results.length).toBeGreaterThan(10);
    // an infrastructure failure is "server unavailable", never "bad user name or password"
    for (const r of results) expect(r.code).toBe(3);
    // the look-up timeout, then a derivation (or "busy" at once when 8 already wait), on a loaded machine
    for (const r of results) expect(r.ms).toBeLessThan(LOOKUP_TIMEOUT_MS + 15_000);
    // the lock is gone: a users login works again
    expect((await login(d.mqttPort, 'ops', 'hunter2')).code).toBe(0);
  }, 60_000);

  it('an unknown user name is looked up in PostgreSQL once per negative-cache window', async () => {
    const before = await metric(d, 'energy_ingest_login_lookups_total');
    const name = `ghost-${randomBytes(6).toString('hex')}`;
    for (let i = 0; i < 5; i++) expect((await login(d.mqttPort, name, `guess-${i}`)).code).toBe(4);
    expect((await metric(d, 'energy_ingest_login_lookups_total')) - before).toBe(1);
    // a name that exists is not cached: a new user must not wait for the window
    for (let i = 0; i < 2; i++) expect((await login(d.mqttPort, 'ops', 'hunter2')).code).toBe(0);
    expect((await metric(d, 'energy_ingest_login_lookups_total')) - before).toBe(3);
  }, 60_000);

  it('unknown, disabled, hash-less and existing names all cost one key derivation and answer 0x04', async () => {
    const cases = [
      `nobody-${randomBytes(6).toString('hex')}`, // unknown
      'sensor-off', // disabled device, wrong password
      'sensor-locked', // disabled device whose hash is no hash
      'sensor-1', // existing device, wrong password
      'ops', // existing user, wrong password
    ];
    for (const name of cases) {
      const before = await metric(d, 'energy_ingest_key_derivations_total');
      const r = await login(d.mqttPort, name, `wrong-${randomBytes(4).toString('hex')}`);
      expect({ name, code: r.code }).toEqual({ name, code: 4 });
      expect({
        name,
        derivations: (await metric(d, 'energy_ingest_key_derivations_total')) - before,
      }).toEqual({ name, derivations: 1 });
    }
    // only who knows a disabled device's password learns that it is disabled
    expect((await login(d.mqttPort, 'sensor-off', 's3nsor-pass')).code).toBe(5);
  }, 60_000);

  it('a users login with PostgreSQL frozen (SIGSTOP) gets CONNACK 0x03 within the look-up timeout', async () => {
    try {
      freeze(pgs, 'SIGSTOP');
      const r = await login(d.mqttPort, 'ops', 'hunter2', 20_000);
      expect(r.code).toBe(3);
      expect(r.ms).toBeLessThan(LOOKUP_TIMEOUT_MS + 5000);
      // and again, now that the pool's connections are the frozen ones
      const again = await login(d.mqttPort, `frozen-${randomBytes(4).toString('hex')}`, 'x', 20_000);
      expect(again.code).toBe(3);
      expect(again.ms).toBeLessThan(LOOKUP_TIMEOUT_MS + 5000);
      // a device (known from the snapshot) still logs in: its check needs no PostgreSQL
      expect((await login(d.mqttPort, 'sensor-1', 's3nsor-pass', 20_000)).code).toBe(0);
    } finally {
      freeze(pgs, 'SIGCONT');
    }
    await eventually(
      async () => (await login(d.mqttPort, 'ops', 'hunter2', 5000)).code === 0,
      20_000,
      'users logins work again after SIGCONT',
    );
  }, 60_000);
});

describe('session logins with Redis frozen (SIGSTOP)', () => {
  it('answers CONNACK 0x03 within the look-up timeout, and logs in again after SIGCONT', async () => {
    const redis = await startRedis();
    const dir = tempDir('login-faults-redis');
    let d: DaemonProcess | undefined;
    const { Redis } = await import('ioredis');
    const client = new Redis(redis.url);
    try {
      await client.set(
        'session:live_1',
        JSON.stringify({
          username: 'kim',
          role: 'user',
          expires_at: new Date(Date.now() + 3_600_000).toISOString(),
        }),
      );
      d = await spawnDaemon({
        REDIS_URL: redis.url,
        EI_AUTH_REDIS_SESSIONS: 'true',
        ALLOW_ANONYMOUS: 'false',
        DATA_DIR: dir,
        EI_AUTH_LOGIN_LOOKUP_TIMEOUT_MS: String(LOOKUP_TIMEOUT_MS),
      });
      expect((await login(d.mqttPort, 'session', 'live_1')).code).toBe(0);
      try {
        redis.pause();
        const r = await login(d.mqttPort, 'session', 'live_1', 20_000);
        // Redis could not say: "server unavailable", never "bad user name or password"
        expect(r.code).toBe(3);
        expect(r.ms).toBeLessThan(LOOKUP_TIMEOUT_MS + 5000);
      } finally {
        redis.resume();
      }
      const daemon = d;
      await eventually(
        async () => (await login(daemon.mqttPort, 'session', 'live_1', 5000)).code === 0,
        20_000,
        'session logins work again after SIGCONT',
      );
    } finally {
      client.disconnect();
      if (d && d.child.exitCode === null) d.child.kill('SIGKILL');
      await d?.exited;
      redis.resume();
      await redis.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
