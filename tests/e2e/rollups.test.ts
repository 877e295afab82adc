import mqtt from 'mqtt';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { migrate } from '../../src/metadata/migrations.js';
import { type DaemonProcess, spawnDaemon } from '../helpers/daemon.js';
import { eventually, freshDatabase, tempDir } from '../helpers/services.js';

// Hourly roll-ups in PostgreSQL: merge-upserts, exactly once per reading
// across a clean restart and a kill -9, energy_usage_daily from power in W.

let url: string;
let db: pg.Client;
const daemons: DaemonProcess[] = [];

beforeAll(async () => {
  url = await freshDatabase(inject('postgresUrl'), 'rollups_e2e');
  await migrate(url);
  db = new pg.Client({ connectionString: url });
  await db.connect();
});
afterAll(async () => {
  for (const d of daemons) if (d.child.exitCode === null) d.child.kill('SIGKILL');
  await db.end();
});

async function start(dataDir: string, flushMs: number): Promise<DaemonProcess> {
  const d = await spawnDaemon({
    DATA_DIR: dataDir,
    DATABASE_URL: url,
    EI_ROLLUPS_FLUSH_INTERVAL_MS: String(flushMs),
    EI_PIPELINE_FLUSH_INTERVAL_MS: '100',
  });
  daemons.push(d);
  return d;
}

/** n QoS 1 power readings of `watts` W in room `room`, all inside the UTC hour that starts at `hourMs`. */
async function publishPower(
  port: number,
  room: string,
  n: number,
  watts: (i: number) => number,
  hourMs: number,
): Promise<void> {
  const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4 });
  const batch = Array.from({ length: n }, (_, i) => ({ value: watts(i), timestamp: hourMs + 1000 + i }));
  for (let i = 0; i < batch.length; i += 100) {
    await c.publishAsync(`sensors/building_003/2/${room}/power`, JSON.stringify(batch.slice(i, i + 100)), {
      qos: 1,
    });
  }
  await c.endAsync();
}

async function row(
  room: string,
): Promise<{ count: number; sum: number; min: number; max: number } | undefined> {
  const r = await db.query(
    `SELECT count::int, sum, min, max FROM sensor_rollups_hourly WHERE building_id = 3 AND room = $1`,
    [room],
  );
  return r.rows[0];
}

describe('hourly roll-ups (real PostgreSQL)', () => {
  const hour = Math.floor((Date.now() - 3_600_000) / 3_600_000) * 3_600_000;

  it('merge-upserts every accepted reading; a clean restart adds nothing twice', async () => {
    const dataDir = tempDir('roll');
    const d1 = await start(dataDir, 200);
    await publishPower(d1.mqttPort, 'r1', 500, (i) => 1000 + (i % 3), hour);
    await eventually(async () => (await row('r1'))?.count === 500, 10_000, 'roll-up flushed');
    expect(await row('r1')).toEqual({ count: 500, sum: 500_000 + 499, min: 1000, max: 1002 });
    d1.child.kill('SIGTERM');
    expect((await d1.exited).code).toBe(0);
    const d2 = await start(dataDir, 200);
    await publishPower(d2.mqttPort, 'r1', 10, () => 2000, hour);
    await eventually(async () => (await row('r1'))?.count === 510, 10_000);
    await new Promise((r) => setTimeout(r, 600));
    expect(await row('r1')).toEqual({ count: 510, sum: 500_499 + 20_000, min: 1000, max: 2000 });
    const kwh = await db.query(
      `SELECT kwh FROM energy_usage_daily WHERE building_id = 3 AND day = $1::date`,
      [new Date(hour).toISOString().slice(0, 10)],
    );
    expect(kwh.rows[0].kwh).toBeCloseTo((500_499 + 20_000) / 510 / 1000, 6);
    d2.child.kill('SIGTERM');
    await d2.exited;
  });

  it('two instances writing the same series and hour add up', async () => {
    const [a, b] = await Promise.all([start(tempDir('rollA'), 200), start(tempDir('rollB'), 200)]);
    await Promise.all([
      publishPower(a.mqttPort, 'shared', 200, () => 100, hour),
      publishPower(b.mqttPort, 'shared', 300, () => 300, hour),
    ]);
    await eventually(async () => (await row('shared'))?.count === 500, 10_000, 'both instances flushed');
    expect(await row('shared')).toEqual({ count: 500, sum: 200 * 100 + 300 * 300, min: 100, max: 300 });
    for (const d of [a, b]) {
      d.child.kill('SIGTERM');
      await d.exited;
    }
  });

  it('kill -9 before a flush: the readings are counted from the durable log on restart, exactly once', async () => {
    const dataDir = tempDir('roll9');
    const d1 = await start(dataDir, 3_600_000); // never flushes by itself
    await publishPower(d1.mqttPort, 'r2', 300, () => 500, hour);
    d1.child.kill('SIGKILL');
    await d1.exited;
    expect(await row('r2')).toBeUndefined();
    const d2 = await start(dataDir, 200);
    await eventually(async () => (await row('r2'))?.count === 300, 10_000, 'replayed readings flushed');
    // a second crash after the flush must not count them again
    d2.child.kill('SIGKILL');
    await d2.exited;
    const d3 = await start(dataDir, 200);
    await new Promise((r) => setTimeout(r, 800));
    expect(await row('r2')).toEqual({ count: 300, sum: 150_000, min: 500, max: 500 });
    d3.child.kill('SIGTERM');
    await d3.exited;
  });
});
