import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { migrate } from '../../src/metadata/migrations.js';
import { type DaemonProcess, spawnDaemon } from '../helpers/daemon.js';
import { type Balancer, HAPROXY, SHIPPED_CFG, startBalancer } from '../helpers/haproxy.js';
import { eventually, freePort, freshDatabase, influxQuery, tempDir } from '../helpers/services.js';

// Issue 14 items 5-7: three nodes (CLUSTER_MODE=redis, own DATA_DIR each, one
// InfluxDB 1.x, Redis and PostgreSQL) behind a real HAProxy running the shipped
// deploy/haproxy.cfg. QoS 1 sensors publish through the balancer; a node is
// killed with kill -9 mid-stream; its sensors reconnect through HAProxy to the
// others; every acknowledged reading ends up in InfluxDB once the killed node
// restarts on its DATA_DIR, or once `energy-ingest drain` sends its log.

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'energy-ingest.js');
const RUN_ID = Math.random().toString(36).slice(2, 8);
let influxUrl: string;
let redisUrl: string;
let pgUrl: string;
let db: pg.Client;
const daemons: DaemonProcess[] = [];
const balancers: Balancer[] = [];

beforeAll(async () => {
  influxUrl = inject('influx1Url');
  redisUrl = inject('redisUrl');
  pgUrl = await freshDatabase(inject('postgresUrl'), 'cluster_faults_e2e');
  await migrate(pgUrl);
  db = new pg.Client({ connectionString: pgUrl });
  await db.connect();
});
afterAll(async () => {
  for (const b of balancers) await b.stop();
  for (const d of daemons) if (d.child.exitCode === null) d.child.kill('SIGKILL');
  await db.end();
});

interface Node {
  id: string;
  dataDir: string;
  mqttPort: number;
  httpPort: number;
  proc: DaemonProcess;
}

function nodeEnv(n: { id: string; dataDir: string }, influxDb: string): Record<string, string> {
  return {
    CLUSTER_MODE: 'redis',
    CLUSTER_NODE_ID: n.id,
    REDIS_URL: redisUrl,
    DATA_DIR: n.dataDir,
    INFLUX_URL: influxUrl,
    INFLUX_DATABASE: influxDb,
    DATABASE_URL: pgUrl,
    EI_PIPELINE_FLUSH_INTERVAL_MS: '100',
    EI_PIPELINE_RETRY_MIN_MS: '100',
    EI_PIPELINE_RETRY_MAX_MS: '1000',
    EI_ROLLUPS_FLUSH_INTERVAL_MS: '300',
    LOG_LEVEL: process.env.CLUSTER_TEST_LOG ?? 'warn',
  };
}

async function startNode(
  n: Omit<Node, 'proc'>,
  influxDb: string,
  extra: Record<string, string> = {},
): Promise<Node> {
  const proc = await spawnDaemon(
    { ...nodeEnv(n, influxDb), ...extra },
    { mqttPort: n.mqttPort, httpPort: n.httpPort },
    [],
    45_000,
  );
  daemons.push(proc);
  return { ...n, proc };
}

/**
 * The first node (the one a test kills) holds its points in memory for a
 * minute before writing them: at its kill -9, what it acknowledged is only in
 * its DATA_DIR log, so the restart or the drain is what must deliver it.
 */
const HOLDING = { EI_PIPELINE_FLUSH_INTERVAL_MS: '60000', EI_PIPELINE_BATCH_SIZE: '1000000' };

async function startCluster(
  name: string,
  influxDb: string,
  count = 3,
  first: Record<string, string> = {},
): Promise<{ nodes: Node[]; lb: Balancer }> {
  const specs = await Promise.all(
    Array.from({ length: count }, async (_, i) => ({
      id: `${name}-${RUN_ID}-n${i + 1}`,
      dataDir: tempDir(`${name}-n${i + 1}`),
      mqttPort: await freePort(),
      httpPort: await freePort(),
    })),
  );
  // one after the other: three start-ups at once on a loaded 2-core machine outlast spawnDaemon's wait
  const nodes: Node[] = [];
  for (const [i, s] of specs.entries()) nodes.push(await startNode(s, influxDb, i === 0 ? first : {}));
  // every node answers /ready's mqtt check before the balancer takes traffic
  const lb = await startBalancer(nodes);
  balancers.push(lb);
  return { nodes, lb };
}

interface Sensors {
  acked: Set<number>;
  reconnects: number;
  done: Promise<void>;
}

/**
 * `clients` MQTT.js sensors (QoS 1, clean sessions, reconnecting every 200 ms)
 * through the balancer, each publishing `perClient` readings with a global
 * unique value (client × 1e6 + seq) and timestamp, `window` in flight. A
 * reading counts as acknowledged when its PUBACK arrived (possibly after a
 * reconnect to another node: MQTT.js resends unacknowledged QoS 1 publishes).
 */
function sensors(port: number, run: string, clients: number, perClient: number, window = 20): Sensors {
  const acked = new Set<number>();
  const state: Sensors = { acked, reconnects: 0, done: Promise.resolve() };
  const base = Date.UTC(2026, 10, 30, 12, 0, 0);
  state.done = Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
        protocolVersion: 4,
        clientId: `${run}-${RUN_ID}-s${c}`,
        reconnectPeriod: 200,
        connectTimeout: 5000,
      });
      client.on('error', () => {});
      client.on('reconnect', () => state.reconnects++);
      let next = 0;
      const worker = async () => {
        while (next < perClient) {
          const value = c * 1_000_000 + next++;
          // MQTT.js rejects a publish whose connection closed before it could be resent:
          // not acknowledged, so the sensor sends it again (at least once, as a device would)
          for (let attempt = 0; ; attempt++) {
            try {
              await client.publishAsync(
                `sensors/building_003/${run}/s${c}/power`,
                JSON.stringify({ value, timestamp: base + value }),
                { qos: 1 },
              );
              break;
            } catch (err) {
              if (attempt >= 100) throw err;
              await new Promise((r) => setTimeout(r, 200));
            }
          }
          acked.add(value);
        }
      };
      await Promise.all(Array.from({ length: window }, worker));
      await client.endAsync();
    }),
  ).then(() => {});
  return state;
}

async function storedValues(influxDb: string, run: string): Promise<Set<number>> {
  const q = `SELECT value FROM sensor_readings WHERE floor = '${run}'`;
  const rows = await influxQuery(influxUrl, influxDb, q).catch((err: Error) => {
    if (err.message.includes('database not found')) return [];
    throw err;
  });
  return new Set(rows.map((r) => r.value as number));
}

async function rollupCount(run: string): Promise<number> {
  const r = await db.query(
    'SELECT COALESCE(SUM(count), 0)::int AS n FROM sensor_rollups_hourly WHERE building_id = 3 AND floor = $1',
    [run],
  );
  return r.rows[0].n as number;
}

async function accepted(n: Node): Promise<number> {
  return Number((await n.proc.status()).readings_accepted ?? 0);
}

function drain(dir: string, influxDb: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      'node',
      [BIN, 'drain', '--data-dir', dir],
      {
        env: {
          ...process.env,
          LOG_LEVEL: 'warn',
          INFLUX_URL: influxUrl,
          INFLUX_DATABASE: influxDb,
          DATABASE_URL: pgUrl,
          DATA_DIR: tempDir('drain-own'),
        },
        timeout: 60_000,
      },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

async function stopAll(nodes: Node[], lb: Balancer): Promise<void> {
  await lb.stop();
  for (const n of nodes) if (n.proc.child.exitCode === null) n.proc.child.kill('SIGTERM');
  for (const n of nodes) await n.proc.exited;
}

/** kill -9 of the first node once it took a good share of the stream, at a random moment; returns it */
async function killFirst(nodes: Node[], s: Sensors): Promise<Node> {
  const victim = nodes[0]!;
  await eventually(async () => (await accepted(victim)) > 500, 30_000, 'the first node takes readings');
  await new Promise((r) => setTimeout(r, Math.random() * 500));
  victim.proc.child.kill('SIGKILL');
  await victim.proc.exited;
  expect(s.acked.size).toBeLessThan(6 * 1500); // killed mid-stream
  return victim;
}

/** what the killed node acknowledged is not in InfluxDB until its log is sent */
async function missing(influxDb: string, run: string, acked: Set<number>): Promise<number> {
  const v = await storedValues(influxDb, run);
  return [...acked].filter((x) => !v.has(x)).length;
}

describe('three nodes behind HAProxy', { timeout: 90_000 }, () => {
  it('the shipped deploy/haproxy.cfg is valid for HAProxy (haproxy -c)', async () => {
    const r = await new Promise<{ code: number; out: string }>((resolve) =>
      execFile(HAPROXY, ['-c', '-f', SHIPPED_CFG], (err, stdout, stderr) =>
        resolve({ code: err ? 1 : 0, out: stdout + stderr }),
      ),
    );
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain('Configuration file is valid');
  });

  it('kill -9 of a node during QoS 1 publishing: sensors move to the others, and after its restart every acknowledged reading is stored', async () => {
    const influxDb = 'cluster_kill_restart';
    const run = `kr${RUN_ID}`;
    const { nodes, lb } = await startCluster('kr', influxDb, 3, HOLDING);
    const s = sensors(lb.mqttPort, run, 6, 1500);
    const victim = await killFirst(nodes, s);
    await s.done; // every sensor finished through the surviving nodes
    expect(s.reconnects).toBeGreaterThan(0);
    expect(s.acked.size).toBe(6 * 1500);
    // the victim's sensors went on through the others
    const survivors = nodes.filter((n) => n !== victim);
    expect((await Promise.all(survivors.map(accepted))).reduce((a, b) => a + b, 0)).toBeGreaterThan(0);

    // the survivors' share is stored; the victim's acknowledged readings are only in its log
    expect(await missing(influxDb, run, s.acked)).toBeGreaterThan(0);
    const back = await startNode(victim, influxDb); // same DATA_DIR and ports: it sends its log
    const got = await eventually(
      async () => {
        const v = await storedValues(influxDb, run);
        return [...s.acked].every((x) => v.has(x)) && v;
      },
      40_000,
      'every acknowledged reading stored',
    );
    expect(got.size).toBeGreaterThanOrEqual(s.acked.size);
    await stopAll([...survivors, back], lb);
    for (const n of nodes) rmSync(n.dataDir, { recursive: true, force: true });
  });

  it("kill -9 of a node that does not come back: drain refuses a live node dir, then sends the dead one's log", async () => {
    const influxDb = 'cluster_kill_drain';
    const run = `kd${RUN_ID}`;
    const { nodes, lb } = await startCluster('kd', influxDb, 3, HOLDING);
    const s = sensors(lb.mqttPort, run, 6, 1500);
    const victim = await killFirst(nodes, s);
    await s.done;
    expect(s.acked.size).toBe(6 * 1500);
    const live = nodes.find((n) => n !== victim)!;
    const refused = await drain(live.dataDir, influxDb);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('EI_DATA_DIR_LOCKED');

    expect(await missing(influxDb, run, s.acked)).toBeGreaterThan(0);
    const drained = await drain(victim.dataDir, influxDb);
    expect(drained.code, drained.stdout + drained.stderr).toBe(0);
    expect(drained.stdout).toContain('drain: done');
    const got = await eventually(
      async () => {
        const v = await storedValues(influxDb, run);
        return [...s.acked].every((x) => v.has(x)) && v;
      },
      30_000,
      'every acknowledged reading stored',
    );
    expect(got.size).toBeGreaterThanOrEqual(s.acked.size);
    // drain completed the dead node's roll-ups as that node: every acknowledged reading counted
    // (a publish resent after a lost PUBACK may be counted by two nodes: at least, not exactly)
    await eventually(
      async () => (await rollupCount(run)) >= s.acked.size,
      20_000,
      'roll-ups of every reading',
    );
    await stopAll(
      nodes.filter((n) => n !== victim),
      lb,
    );
    for (const n of nodes) rmSync(n.dataDir, { recursive: true, force: true });
  });

  it("two nodes' roll-ups add up exactly to the readings stored", async () => {
    const influxDb = 'cluster_rollups';
    const run = `ru${RUN_ID}`;
    const { nodes, lb } = await startCluster('ru', influxDb, 2);
    const s = sensors(lb.mqttPort, run, 4, 1000);
    await s.done;
    expect(s.acked.size).toBe(4000);
    const per = await Promise.all(nodes.map(accepted));
    expect(
      per.every((n) => n > 0),
      `readings per node: ${per}`,
    ).toBe(true); // both nodes took sensors
    expect(per.reduce((a, b) => a + b, 0)).toBe(4000);
    await eventually(async () => (await storedValues(influxDb, run)).size === 4000, 30_000, 'all stored');
    await eventually(async () => (await rollupCount(run)) === 4000, 20_000, 'roll-ups flushed');
    await stopAll(nodes, lb);
    expect(await rollupCount(run)).toBe(4000);
    for (const n of nodes) rmSync(n.dataDir, { recursive: true, force: true });
  });
});
