import { rmSync } from 'node:fs';
import mqtt from 'mqtt';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type DaemonProcess, metricValue, spawnDaemon } from '../helpers/daemon.js';
import {
  eventually,
  influxQuery,
  type RestartableService,
  startInflux1,
  tempDir,
} from '../helpers/services.js';

// Contract section 7: writes back off 1 s to 30 s with jitter, and while they
// fail the sink is probed cheaply every few seconds, so writing resumes within
// 5 s of the server answering again, however long the outage made the backoff.
// The daemon runs with the real retry policy (no test overrides of it).

let influx: RestartableService;
let daemon: DaemonProcess | undefined;
const dataDir = tempDir('resume');
beforeAll(async () => {
  influx = await startInflux1();
});
afterAll(async () => {
  if (daemon && daemon.child.exitCode === null) daemon.child.kill('SIGKILL');
  await influx.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

async function publish(port: number, floor: string, count: number): Promise<void> {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
    protocolVersion: 4,
    reconnectPeriod: 0,
    clientId: `pub-${floor}`,
  });
  const base = Date.now() - 60_000;
  const window = 20;
  let next = 0;
  await Promise.all(
    Array.from({ length: window }, async () => {
      while (next < count) {
        const seq = next++;
        await client.publishAsync(
          `sensors/building_001/${floor}/r${seq % 20}/power`,
          JSON.stringify({ value: seq, timestamp: base + seq }),
          { qos: 1 },
        );
      }
    }),
  );
  await client.endAsync();
}

async function storedCount(floor: string): Promise<number> {
  const rows = await influxQuery(
    influx.url,
    'resume',
    `SELECT count(value) FROM sensor_readings WHERE floor = '${floor}'`,
  );
  return Number(rows[0]?.count ?? 0);
}

it('after a long InfluxDB outage, every acknowledged reading is stored within 5 s (+ CI margin) of /ping answering again', async () => {
  const d = await spawnDaemon({
    INFLUX_URL: influx.url,
    INFLUX_API: 'v1',
    INFLUX_DATABASE: 'resume',
    DATA_DIR: dataDir,
    EI_PIPELINE_FLUSH_INTERVAL_MS: '100',
    // small batches: several are in flight, each backing off on its own
    EI_PIPELINE_BATCH_SIZE: '100',
  });
  daemon = d;
  await publish(daemon.mqttPort, 'before', 200);
  await eventually(async () => (await storedCount('before')) === 200, 15_000, 'first readings stored');

  await influx.crash();
  const downAt = Date.now();
  await publish(daemon.mqttPort, 'during', 1000); // acknowledged from the durable log
  // long enough for the backoff to reach its 16–30 s steps (ceilings 1 + 2 + 4 + 8 + 16 s)
  const left = 36_000 - (Date.now() - downAt);
  if (left > 0) await new Promise((r) => setTimeout(r, left));
  expect(daemon.child.exitCode).toBeNull();

  const writtenBefore = metricValue(await d.metrics(), 'energy_ingest_points_written_total');
  await influx.restart(); // resolves once /ping answers
  const answeredAt = Date.now();
  // "resumes" is the daemon's first successful write (InfluxDB's 204), what the daemon controls;
  // a restarted InfluxDB on a loaded machine may take a while longer to answer the count query
  await eventually(
    async () => metricValue(await d.metrics(), 'energy_ingest_points_written_total') > writtenBefore,
    20_000,
    'a write after the outage',
  );
  const resumedInMs = Date.now() - answeredAt;
  await eventually(async () => (await storedCount('during')) === 1000, 30_000, 'backlog stored');
  const storedInMs = Date.now() - answeredAt;
  console.log(
    `writes resumed ${resumedInMs} ms after /ping answered again; backlog of 1000 stored after ${storedInMs} ms`,
  );
  expect(resumedInMs).toBeLessThan(8000);
  expect(metricValue(await d.metrics(), 'energy_ingest_write_retries_total')).toBeGreaterThanOrEqual(5);
  daemon.child.kill('SIGTERM');
  expect((await daemon.exited).code, daemon.output()).toBe(0);
}, 90_000);
