import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from '../helpers/browser.js';
import { type DaemonProcess, metricValue, spawnDaemon } from '../helpers/daemon.js';
import { eventually, type RestartableService, startRedis, tempDir } from '../helpers/services.js';

// Cluster mode over Redis (contract section 14, issue 14 items 2 and 4): two
// built daemons on one real redis-server, real MQTT.js clients on each. A
// dashboard on node A sees what is published on node B (readings, alert
// events, plain topics, retained state); nothing crosses while nobody on the
// other node subscribes; Redis killed mid-stream costs no PUBACK and delivery
// resumes when it is back; the registry lists the live nodes.

const CONFIG = `
alerts:
  locale: en
  rules:
    - { id: power-high, sensor_type: power, above: 5000, hysteresis: 500, severity: warning }
`;

interface Received {
  topic: string;
  payload: string;
  retain: boolean;
}

async function dashboard(port: number, filters: string[], clientId?: string) {
  const client: MqttClient = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
    protocolVersion: 4,
    clientId,
    reconnectPeriod: 0,
  });
  const got: Received[] = [];
  client.on('message', (topic, payload, packet) =>
    got.push({ topic, payload: payload.toString(), retain: packet.retain }),
  );
  await client.subscribeAsync(filters, { qos: 1 });
  return { client, got };
}

describe('cluster mode (redis)', () => {
  let redis: RestartableService;
  let a: DaemonProcess;
  let b: DaemonProcess;
  const clients: MqttClient[] = [];
  const daemons: DaemonProcess[] = [];
  let config: string;

  const node = async (id: string) => {
    const d = await spawnDaemon({
      DATA_DIR: tempDir(`cluster-${id}`),
      REDIS_URL: redis.url,
      CLUSTER_MODE: 'redis',
      CLUSTER_NODE_ID: id,
      ENERGY_INGEST_CONFIG: config,
      EI_CLUSTER_HEARTBEAT_INTERVAL_MS: '1000',
      // the smallest queue for other nodes, so a frozen Redis fills it within a few thousand readings
      EI_CLUSTER_MAX_QUEUED_BYTES: '65536',
    });
    daemons.push(d);
    return d;
  };
  const metric = async (d: DaemonProcess, name: string) => metricValue(await d.metrics(), name);
  const clusterIds = async (d: DaemonProcess) => {
    const r = await fetch(`http://127.0.0.1:${d.httpPort}/api/cluster`);
    if (!r.ok) throw new Error(`/api/cluster: ${r.status}`);
    const body = (await r.json()) as { nodes: { id: string }[] };
    return body.nodes.map((n) => n.id).sort();
  };
  const publisher = async (d: DaemonProcess) => {
    const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${d.mqttPort}`, { protocolVersion: 4 });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    config = join(tempDir('cluster-cfg'), 'config.yaml');
    writeFileSync(config, CONFIG);
    redis = await startRedis();
    [a, b] = await Promise.all([node('node-a'), node('node-b')]);
  }, 60_000);

  afterAll(async () => {
    for (const c of clients) c.end(true);
    for (const d of daemons) {
      d.child.kill('SIGKILL');
      await d.exited;
    }
    await redis?.stop();
  });

  it('GET /api/cluster lists both nodes, /ready has checks.cluster', async () => {
    await eventually(
      async () => JSON.stringify(await clusterIds(a)) === '["node-a","node-b"]',
      15_000,
      'both nodes registered',
    );
    const r = await fetch(`http://127.0.0.1:${b.httpPort}/api/cluster`);
    const { nodes } = (await r.json()) as { nodes: Record<string, unknown>[] };
    const nb = nodes.find((n) => n.id === 'node-b')!;
    expect(Object.keys(nb).sort()).toEqual(
      [
        'id',
        'mqtt',
        'http',
        'started_at',
        'last_seen',
        'connected_clients',
        'readings_per_s',
        'backlog',
      ].sort(),
    );
    expect(nb.mqtt).toBe(`127.0.0.1:${b.mqttPort}`);
    expect(nb.http).toBe(`127.0.0.1:${b.httpPort}`);
    const ready = (await (await fetch(`http://127.0.0.1:${a.httpPort}/ready`)).json()) as {
      checks: Record<string, { ok: boolean }>;
    };
    expect(ready.checks.cluster?.ok).toBe(true);
    for (const d of [a, b]) expect(await metric(d, 'energy_ingest_cluster_node_id_conflicts_total')).toBe(0);
  });

  it('with no subscriber on another node, nothing is forwarded', async () => {
    const p = await publisher(b);
    for (let i = 0; i < 50; i++)
      await p.publishAsync(`sensors/building_001/1/r1/temperature`, String(20 + i / 10), { qos: 1 });
    await p.publishAsync('plain/nobody', 'x', { qos: 1 });
    // a local subscriber on b does not make anything cross either
    const local = await dashboard(b.mqttPort, ['sensors/#']);
    clients.push(local.client);
    await p.publishAsync(`sensors/building_001/1/r1/temperature`, '21', { qos: 1 });
    await eventually(async () => local.got.length === 1, 10_000, 'local delivery');
    expect(await metric(b, 'energy_ingest_cluster_forwarded_total')).toBe(0);
    expect(await metric(a, 'energy_ingest_cluster_received_total')).toBe(0);
    local.client.end(true);
  });

  it('a dashboard on node A receives readings, alert events and plain topics published on node B, once', async () => {
    const dash = await dashboard(a.mqttPort, ['sensors/#', 'alerts/#', 'plain/#']);
    clients.push(dash.client);
    // and one on B itself: a reading that crossed to A must not come back to B
    const dashB = await dashboard(b.mqttPort, ['sensors/#']);
    clients.push(dashB.client);
    await eventually(
      async () => (await metric(b, 'energy_ingest_cluster_remote_filters')) >= 3,
      10_000,
      "node B sees node A's filters",
    );
    const acceptedOnA = await metric(a, 'energy_ingest_readings_accepted_total');
    const p = await publisher(b);
    await p.publishAsync('sensors/building_002/3/r7/power', JSON.stringify({ value: 1200 }), { qos: 1 });
    await p.publishAsync('plain/hello', '안녕 from b', { qos: 0 });
    await p.publishAsync('sensors/building_002/3/r7/power', JSON.stringify({ value: 9000 }), { qos: 1 });
    await eventually(
      async () => dash.got.some((m) => m.topic.startsWith('alerts/building_002/3/r7/power/power-high')),
      15_000,
      'alert raised on B seen on A',
    );
    await eventually(async () => dash.got.filter((m) => m.topic.startsWith('sensors/')).length === 2, 10_000);
    const readings = dash.got.filter((m) => m.topic.startsWith('sensors/'));
    expect(readings.map((m) => JSON.parse(m.payload).value)).toEqual([1200, 9000]);
    expect(dash.got.find((m) => m.topic === 'plain/hello')?.payload).toBe('안녕 from b');
    const alert = JSON.parse(dash.got.find((m) => m.topic.startsWith('alerts/'))!.payload);
    expect(alert).toMatchObject({
      state: 'raised',
      rule_id: 'power-high',
      building_id: 'building_002',
      value: 9000,
    });
    // delivered on A only: A stored nothing (not re-ingested), B's own dashboard got each reading once
    expect(await metric(a, 'energy_ingest_readings_accepted_total')).toBe(acceptedOnA);
    await new Promise((r) => setTimeout(r, 500));
    expect(dashB.got.filter((m) => m.topic === 'sensors/building_002/3/r7/power')).toHaveLength(2);
    expect(await metric(b, 'energy_ingest_cluster_received_total')).toBe(0);
    expect(await metric(b, 'energy_ingest_cluster_forwarded_total')).toBeGreaterThanOrEqual(3);
  });

  it('retained messages are cluster-wide: a new subscriber on A gets what B retained, alert state included', async () => {
    const p = await publisher(b);
    await p.publishAsync('plain/state/boiler', 'on', { qos: 1, retain: true });
    const late = await eventually(
      async () => {
        const d = await dashboard(a.mqttPort, ['plain/state/#', 'alerts/#']);
        await new Promise((r) => setTimeout(r, 500));
        d.client.end(true);
        // retained deliveries only: a subscriber that joins while the message is still crossing
        // gets it live (retain 0, MQTT-3.3.1-9) and must try again
        const alert = d.got.some(
          (m) => m.retain && m.topic.startsWith('alerts/building_002/3/r7/power/power-high'),
        );
        return d.got.some((m) => m.retain && m.topic === 'plain/state/boiler') && alert ? d : undefined;
      },
      10_000,
      'retained message from B on A',
    );
    const boiler = late.got.find((m) => m.retain && m.topic === 'plain/state/boiler')!;
    expect(boiler).toMatchObject({ payload: 'on', retain: true });
    const alert = late.got.find(
      (m) => m.retain && m.topic.startsWith('alerts/building_002/3/r7/power/power-high'),
    );
    expect(alert?.retain).toBe(true);
    // deleting it on B deletes it everywhere
    await p.publishAsync('plain/state/boiler', '', { qos: 1, retain: true });
    await eventually(
      async () => {
        const d = await dashboard(a.mqttPort, ['plain/state/#']);
        await new Promise((r) => setTimeout(r, 300));
        d.client.end(true);
        return d.got.length === 0;
      },
      10_000,
      'retained message removed on A',
    );
  });

  it('Redis killed mid-stream: QoS 1 publishes on both nodes are acknowledged, then delivery resumes', async () => {
    const dash = await dashboard(a.mqttPort, ['sensors/building_005/#'], 'dash-outage');
    clients.push(dash.client);
    await eventually(
      async () => (await metric(b, 'energy_ingest_cluster_remote_filters')) >= 4,
      10_000,
      'node B sees the new filter',
    );
    const pa = await publisher(a);
    const pb = await publisher(b);
    let n = 0;
    const burst = async (count: number) => {
      for (let i = 0; i < count; i++) {
        n++;
        // each PUBACK within 5 s, on both nodes, whatever Redis does
        const acks = [pa, pb].map((c, j) =>
          Promise.race([
            c.publishAsync(`sensors/building_005/1/r${j}/energy`, String(n), { qos: 1 }),
            new Promise((_, reject) => setTimeout(() => reject(new Error(`no PUBACK for #${n}`)), 5000)),
          ]),
        );
        await Promise.all(acks);
      }
    };
    await burst(20);
    await eventually(async () => dash.got.length >= 20, 10_000, 'forwarded before the outage');
    await redis.crash();
    await burst(50);
    expect((await fetch(`http://127.0.0.1:${a.httpPort}/health`)).ok).toBe(true);
    expect((await fetch(`http://127.0.0.1:${b.httpPort}/health`)).ok).toBe(true);
    await eventually(
      async () => (await metric(b, 'energy_ingest_cluster_dropped_total{reason="redis_down"}')) > 0,
      10_000,
      'drops counted while Redis is down',
    );
    const ready = (await (await fetch(`http://127.0.0.1:${b.httpPort}/ready`)).json()) as {
      checks: Record<string, { ok: boolean }>;
    };
    expect(ready.checks.cluster?.ok).toBe(false);
    await redis.restart();
    // Redis came back empty: the nodes register again and B learns A's filters again
    const before = dash.got.length;
    await eventually(
      async () => {
        await burst(1);
        return dash.got.length > before;
      },
      20_000,
      'forwarding resumed after Redis restarted',
    );
    await eventually(
      async () => JSON.stringify(await clusterIds(a)) === '["node-a","node-b"]',
      10_000,
      'both nodes registered again',
    );
    // the restarted Redis is empty: the nodes wrote their retained state (the active alert) back
    const r = new Redis(redis.url);
    try {
      await eventually(
        async () => (await r.hkeys('cluster:retained')).includes('alerts/building_002/3/r7/power/power-high'),
        10_000,
        'retained alert state re-seeded',
      );
    } finally {
      r.disconnect();
    }
    // every acknowledged reading is in each node's own log: nothing was lost on the sensor path
    const accepted =
      (await metric(a, 'energy_ingest_readings_accepted_total')) +
      (await metric(b, 'energy_ingest_readings_accepted_total'));
    expect(accepted).toBeGreaterThanOrEqual(2 * n);
    expect(a.child.exitCode).toBeNull();
    expect(b.child.exitCode).toBeNull();
    const out = b.output();
    expect(out.match(/cross-node delivery over Redis failing/g)?.length ?? 0).toBeLessThanOrEqual(1);
  }, 60_000);

  it('Redis frozen (SIGSTOP): PUBACKs keep coming, the queue for other nodes stays bounded, delivery resumes', async () => {
    const dash = await dashboard(a.mqttPort, ['sensors/building_007/#'], 'dash-frozen');
    clients.push(dash.client);
    await eventually(
      async () => (await metric(b, 'energy_ingest_cluster_remote_filters')) >= 5,
      10_000,
      'node B sees the new filter',
    );
    const pb = await publisher(b);
    const payload = JSON.stringify({ value: 1, unit: 'kWh', note: 'x'.repeat(200) });
    const full = 'energy_ingest_cluster_dropped_total{reason="queue_full"}';
    const fullBefore = await metric(b, full);
    redis.pause();
    try {
      // ~250 bytes per message crossing: 2000 of them are far more than the 64 KiB queue
      for (let i = 0; i < 2000; i++) {
        const ack = pb.publishAsync(`sensors/building_007/1/r1/energy`, payload, {
          qos: i % 10 === 0 ? 1 : 0,
        });
        if (i % 10 === 0)
          await Promise.race([
            ack,
            new Promise((_, reject) => setTimeout(() => reject(new Error(`no PUBACK for #${i}`)), 5000)),
          ]);
      }
      await eventually(async () => (await metric(b, full)) > fullBefore, 10_000, 'queue_full drops counted');
      expect(await metric(b, 'energy_ingest_cluster_queued_bytes')).toBeLessThanOrEqual(65536);
      expect((await fetch(`http://127.0.0.1:${b.httpPort}/health`)).ok).toBe(true);
    } finally {
      redis.resume();
    }
    const before = dash.got.length;
    await eventually(
      async () => {
        await pb.publishAsync('sensors/building_007/1/r2/energy', '5', { qos: 1 });
        return dash.got.some((m, i) => i >= before && m.topic === 'sensors/building_007/1/r2/energy');
      },
      20_000,
      'forwarding resumed after Redis thawed',
    );
  }, 60_000);

  it('the status page shows the nodes and the cluster check (no CSP violation)', async () => {
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) errors.push(m.text());
      });
      page.on('pageerror', (e) => errors.push(e.message));
      // (the browser's own favicon.ico request is the one 404 it may log)
      page.on('response', (r) => {
        if (r.status() >= 400 && !r.url().endsWith('/favicon.ico')) errors.push(`${r.status()} ${r.url()}`);
      });
      await page.goto(`http://127.0.0.1:${a.httpPort}/?lang=en`);
      await expect.poll(() => page.locator('#nodes tr').count(), { timeout: 15_000 }).toBe(2);
      expect(await page.locator('#cluster').isVisible()).toBe(true);
      const row = (await page.locator('tr[data-node="node-b"]').textContent()) ?? '';
      expect(row).toContain(`127.0.0.1:${b.mqttPort} / 127.0.0.1:${b.httpPort}`);
      await expect
        .poll(() => page.locator('[data-service="cluster"] .dot.ok').count(), { timeout: 10_000 })
        .toBe(1);
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
    }
  }, 40_000);

  it('a second process with the same CLUSTER_NODE_ID is reported (counted and logged)', async () => {
    const dup = await node('node-a');
    try {
      const conflicts = async () =>
        (await metric(a, 'energy_ingest_cluster_node_id_conflicts_total')) +
        (await metric(dup, 'energy_ingest_cluster_node_id_conflicts_total'));
      await eventually(async () => (await conflicts()) > 0, 15_000, 'node id conflict noticed');
      // pino writes stdout asynchronously (a thread-pool write), so the /metrics response that
      // shows the count can reach us before the log line does: wait for the line too
      await eventually(
        async () => (a.output() + dup.output()).includes('same CLUSTER_NODE_ID'),
        10_000,
        'node id conflict logged',
      );
    } finally {
      dup.child.kill('SIGKILL');
      await dup.exited;
    }
  }, 40_000);

  it('a node that stops disappears from /api/cluster within 15 s', async () => {
    b.child.kill('SIGKILL');
    await b.exited;
    const t0 = Date.now();
    await eventually(async () => JSON.stringify(await clusterIds(a)) === '["node-a"]', 25_000, 'node-b gone');
    expect(Date.now() - t0).toBeLessThan(20_000);
  }, 40_000);
});
