import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, afterEach, describe, expect, inject, it } from 'vitest';
import { type DaemonProcess, metricValue, spawnDaemon } from '../helpers/daemon.js';
import { type Mosquitto, startMosquitto } from '../helpers/mosquitto.js';
import { eventually, influxQuery, tempDir } from '../helpers/services.js';

// Bridge mode (contract section 15) against a real Mosquitto 2.0 (Debian),
// started by each test on a free port with persistence on: readings published
// to it reach InfluxDB with our durability across a kill -9 of the daemon and
// a restart of Mosquitto, a share group splits the stream between two nodes,
// MQTT 5 sensors are stored, alerts are retained on Mosquitto.

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'energy-ingest.js');
const influxUrl = () => inject('influx1Url');
const daemons: DaemonProcess[] = [];
const brokers: Mosquitto[] = [];
const clients: MqttClient[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.end(true);
  for (const d of daemons.splice(0)) {
    if (d.child.exitCode === null && d.child.signalCode === null) {
      d.child.kill('SIGKILL');
      await d.exited;
    }
  }
  for (const b of brokers.splice(0)) await b.stop();
});
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function mosquitto(): Promise<Mosquitto> {
  const m = await startMosquitto();
  brokers.push(m);
  return m;
}

function dir(prefix: string): string {
  const d = tempDir(prefix);
  dirs.push(d);
  return d;
}

async function daemon(env: Record<string, string>): Promise<DaemonProcess> {
  const d = await spawnDaemon({ INFLUX_URL: influxUrl(), INFLUX_API: 'v1', ...env });
  daemons.push(d);
  return d;
}

async function ready(d: DaemonProcess): Promise<Record<string, unknown>> {
  return eventually(
    async () => {
      const res = await fetch(`http://127.0.0.1:${d.httpPort}/ready`);
      const body = (await res.json()) as {
        checks: { upstream?: { subscribed: number; connections: number } };
      };
      const up = body.checks.upstream;
      return res.status === 200 && up && up.subscribed === up.connections ? body : undefined;
    },
    20_000,
    `daemon ready and subscribed upstream\n${d.output()}`,
  );
}

/** the seq numbers (the `value` field) stored for one run: one point per identity */
async function stored(db: string, run: string): Promise<Set<number>> {
  const rows = await influxQuery(influxUrl(), db, `SELECT value FROM sensor_readings WHERE floor = '${run}'`);
  return new Set(rows.map((r) => Number(r.value)));
}

interface Publisher {
  readonly acked: Set<number>;
  readonly done: Promise<void>;
  readonly client: MqttClient;
}

/**
 * A sensor gateway publishing `total` QoS 1 readings to Mosquitto at about `perSecond`, each with
 * its own identity (room + timestamp) and its seq as value. A persistent session that reconnects:
 * MQTT.js resends what Mosquitto did not acknowledge. `acked`: what Mosquitto acknowledged.
 */
function publish(
  url: string,
  run: string,
  total: number,
  perSecond: number,
  protocolVersion: 4 | 5 = 4,
): Publisher {
  const client = mqtt.connect(url, {
    clientId: `gw-${run}`,
    protocolVersion,
    clean: false,
    reconnectPeriod: 250,
    ...(protocolVersion === 5 ? { properties: { sessionExpiryInterval: 300 } } : {}),
  });
  client.on('error', () => {});
  clients.push(client);
  const acked = new Set<number>();
  const base = Date.now() - 60_000;
  const done = (async () => {
    const sends: Promise<void>[] = [];
    const perTick = Math.max(1, Math.round(perSecond / 50));
    for (let seq = 0; seq < total; ) {
      for (let i = 0; i < perTick && seq < total; i++, seq++) {
        const s = seq;
        const topic = `sensors/building_001/${run}/r${s % 20}/power`;
        const body = JSON.stringify({ value: s, timestamp: base + s });
        sends.push(
          client.publishAsync(topic, body, { qos: 1 }).then(
            () => void acked.add(s),
            () => {},
          ),
        );
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    await Promise.all(sends);
  })();
  return { acked, done, client };
}

function bridgeEnv(url: string, db: string, dataDir: string, clientId: string): Record<string, string> {
  return {
    UPSTREAM_MQTT_URL: url,
    INFLUX_DATABASE: db,
    DATA_DIR: dataDir,
    EI_UPSTREAM_CLIENT_ID: clientId,
  };
}

describe('bridge mode with Mosquitto', () => {
  it('stores readings of MQTT 3.1.1 and MQTT 5 sensors published to Mosquitto, without the embedded broker', async () => {
    const m = await mosquitto();
    const dataDir = dir('bridge-basic');
    // credentials in the URL go to CONNECT (Mosquitto here accepts anyone) and never to a log or answer
    const url = `mqtt://gateway:s3cr3t-pw@127.0.0.1:${m.port}`;
    const d = await daemon({
      ...bridgeEnv(url, 'bridge_basic', dataDir, 'ei-basic'),
      EI_MQTT_ENABLED: 'false',
      LOG_LEVEL: 'info',
    });
    const body = JSON.stringify(await ready(d));
    expect(body).toContain('"enabled":false');
    expect(body).not.toContain('s3cr3t-pw');
    // no embedded listener
    const refused = await new Promise<boolean>((resolve) => {
      const s = connect(d.mqttPort, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(false);
      });
      s.once('error', () => resolve(true));
    });
    expect(refused).toBe(true);

    const v4 = publish(m.url, 'v4', 200, 2000, 4);
    const v5 = publish(m.url, 'v5', 200, 2000, 5);
    await Promise.all([v4.done, v5.done]);
    expect(v4.acked.size).toBe(200);
    expect(v5.acked.size).toBe(200);
    // a bad reading through Mosquitto: acknowledged, dead-lettered with the upstream connection as client
    const bad = await mqtt.connectAsync(m.url, { protocolVersion: 5, clientId: 'bad-sensor' });
    clients.push(bad);
    await bad.publishAsync('sensors/building_001/1/101/power', 'not a number', { qos: 1 });

    await eventually(async () => (await stored('bridge_basic', 'v4')).size === 200, 20_000, 'v4 stored');
    await eventually(async () => (await stored('bridge_basic', 'v5')).size === 200, 20_000, 'v5 stored');
    const dead = await eventually(
      async () => {
        const files = readdirSync(join(dataDir, 'deadletter')).filter((f) => f.endsWith('.jsonl'));
        const lines = files.flatMap((f) =>
          readFileSync(join(dataDir, 'deadletter', f), 'utf8')
            .split('\n')
            .filter(Boolean),
        );
        return lines.length ? lines.map((l) => JSON.parse(l) as Record<string, string>) : undefined;
      },
      10_000,
      'dead letter',
    );
    expect(dead).toHaveLength(1);
    expect(dead[0]).toMatchObject({ reason: 'bad_json', topic: 'sensors/building_001/1/101/power' });
    expect(dead[0]!.client_id).toMatch(/^upstream:ei-basic-[12]$/);

    const metrics = await d.metrics();
    const received =
      metricValue(metrics, 'energy_ingest_upstream_messages_total{connection="0"}') +
      metricValue(metrics, 'energy_ingest_upstream_messages_total{connection="1"}');
    expect(received).toBe(401);
    expect(metricValue(metrics, 'energy_ingest_upstream_connected{connection="1"}')).toBe(1);
    const status = JSON.stringify(await d.status());
    expect(status).toContain('"upstream"');
    expect(status).not.toContain('s3cr3t-pw');
    expect(d.output()).not.toContain('s3cr3t-pw');

    // energy-ingest check: the upstream line, no MQTT bind line (the embedded broker is off)
    const check = spawnSync('node', [BIN, 'check'], {
      env: {
        ...process.env,
        ...bridgeEnv(url, 'bridge_basic', dataDir, 'ei-basic'),
        INFLUX_URL: influxUrl(),
        EI_MQTT_ENABLED: 'false',
      },
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(check.stdout).toMatch(/^ok +upstream +mqtt:\/\/127\.0\.0\.1:\d+ .*CONNACK ok, MQTT 5/m);
    expect(check.stdout).not.toMatch(/ mqtt /);
    expect(check.stdout + check.stderr).not.toContain('s3cr3t-pw');
    expect(check.status).toBe(0);
  });

  it('kill -9 of the daemon while readings flow: everything Mosquitto acknowledged is stored', async () => {
    const m = await mosquitto();
    const dataDir = dir('bridge-kill');
    // MQTT 3.1.1 upstream connections here (the others use the default, 5): clean session off is the whole session
    const env = { ...bridgeEnv(m.url, 'bridge_kill', dataDir, 'ei-kill'), EI_UPSTREAM_PROTOCOL_VERSION: '4' };
    const d1 = await daemon(env);
    await ready(d1);
    const total = 3000;
    const pub = publish(m.url, 'k9', total, 600);
    // killed mid-stream, once it has acknowledged some upstream
    await eventually(
      async () => metricValue(await d1.metrics(), 'energy_ingest_upstream_acks_total{connection="0"}') > 100,
      15_000,
      'first acks',
    );
    d1.child.kill('SIGKILL');
    await d1.exited;
    await new Promise((r) => setTimeout(r, 1000)); // Mosquitto queues for the offline persistent session
    const d2 = await daemon(env);
    await pub.done;
    expect(pub.acked.size).toBe(total);
    const got = await eventually(
      async () => {
        const s = await stored('bridge_kill', 'k9');
        return s.size === total ? s : undefined;
      },
      30_000,
      `all ${total} stored\n${d2.output()}`,
    );
    for (const seq of pub.acked) expect(got.has(seq)).toBe(true);
  });

  it('two daemons in one share group split the stream and store each reading exactly once', async () => {
    const m = await mosquitto();
    const a = await daemon(bridgeEnv(m.url, 'bridge_share', dir('bridge-a'), 'ei-node-a'));
    const b = await daemon(bridgeEnv(m.url, 'bridge_share', dir('bridge-b'), 'ei-node-b'));
    await Promise.all([ready(a), ready(b)]);
    const total = 2000;
    const pub = publish(m.url, 'share', total, 2000);
    await pub.done;
    expect(pub.acked.size).toBe(total);
    await eventually(
      async () => (await stored('bridge_share', 'share')).size === total,
      20_000,
      'all stored',
    );
    const accepted = async (d: DaemonProcess) => Number((await d.status()).readings_accepted);
    // no crash, no reconnect: each message went to one member of the group, once
    await eventually(async () => (await accepted(a)) + (await accepted(b)) === total, 10_000, 'exactly once');
    expect(await accepted(a)).toBeGreaterThan(0);
    expect(await accepted(b)).toBeGreaterThan(0);
  });

  it('alerts are published to Mosquitto, retained while raised and removed when cleared', async () => {
    const m = await mosquitto();
    const cfg = join(dir('bridge-alert-cfg'), 'config.yaml');
    writeFileSync(
      cfg,
      'alerts:\n  locale: en\n  rules:\n    - { id: power-high, sensor_type: power, above: 5000, severity: critical }\n',
    );
    const d = await daemon({
      ...bridgeEnv(m.url, 'bridge_alerts', dir('bridge-alerts'), 'ei-alerts'),
      ENERGY_INGEST_CONFIG: cfg,
      // alerts need no embedded broker
      EI_MQTT_ENABLED: 'false',
    });
    await ready(d);
    const sensor = await mqtt.connectAsync(m.url, { protocolVersion: 5, clientId: 'power-meter' });
    clients.push(sensor);
    const topic = 'alerts/building_001/3/301/power/power-high';
    await sensor.publishAsync('sensors/building_001/3/301/power', '9000', { qos: 1 });

    /** what a dashboard connecting now gets as retained on alerts/# */
    const retained = async () => {
      const c = await mqtt.connectAsync(m.url, { protocolVersion: 4, clean: true });
      clients.push(c);
      const got: Array<{ topic: string; retain: boolean; body: string }> = [];
      c.on('message', (t, p, packet) => got.push({ topic: t, retain: packet.retain, body: p.toString() }));
      await c.subscribeAsync('alerts/#', { qos: 1 });
      await new Promise((r) => setTimeout(r, 300));
      await c.endAsync();
      return got;
    };
    const raised = await eventually(async () => ((await retained()).length ? retained() : undefined), 10_000);
    expect(raised).toHaveLength(1);
    expect(raised[0]!.topic).toBe(topic);
    expect(raised[0]!.retain).toBe(true);
    expect(JSON.parse(raised[0]!.body)).toMatchObject({
      state: 'raised',
      rule_id: 'power-high',
      value: 9000,
    });

    await sensor.publishAsync('sensors/building_001/3/301/power', '100', { qos: 1 });
    await eventually(async () => (await retained()).length === 0, 10_000, 'retained alert removed');
  });

  // Measured with Mosquitto 2.0.11: a restart restores persistent sessions, their queues and plain
  // subscriptions from the persistence file, but not $share subscriptions: until the daemon has
  // subscribed again, what sensors publish to sensors/… matches no subscriber and Mosquitto drops it
  // (after acknowledging it to the sensor). README "Bridge mode" says so; the two cases are tested.
  it.each([
    { group: 'energy-ingest', what: 'share group: everything acknowledged before the restart' },
    { group: '', what: 'plain subscription: everything Mosquitto acknowledged' },
  ])('Mosquitto restarted mid-stream ($what) is stored, the daemon reconnects', async ({ group }) => {
    const m = await mosquitto();
    const db = group ? 'bridge_restart_share' : 'bridge_restart_plain';
    const d = await daemon({
      ...bridgeEnv(m.url, db, dir('bridge-restart'), 'ei-restart'),
      EI_UPSTREAM_SHARE_GROUP: group,
    });
    await ready(d);
    const total = 3000;
    const pub = publish(m.url, 'mr', total, 600);
    await eventually(async () => pub.acked.size > 500, 15_000, 'stream flowing');
    // SIGTERM: Mosquitto saves its persistence file (sessions, queues, in-flight) and comes back with it
    const ackedBefore = new Set(pub.acked);
    await m.shutdown();
    await new Promise((r) => setTimeout(r, 1000));
    await m.restart();
    await pub.done;
    expect(pub.acked.size).toBe(total);
    await ready(d);
    const mustHave = group ? ackedBefore : pub.acked;
    const got = await eventually(
      async () => {
        const s = await stored(db, 'mr');
        return [...mustHave].every((seq) => s.has(seq)) ? s : undefined;
      },
      30_000,
      `everything acknowledged stored\n${d.output()}`,
    );
    if (!group) expect(got.size).toBe(total);
    // once subscribed again, the stream is stored whole
    const after = publish(m.url, 'mr2', 500, 1000);
    await after.done;
    await eventually(async () => (await stored(db, 'mr2')).size === 500, 20_000, 'after the restart');
    const metrics = await d.metrics();
    expect(
      metricValue(metrics, 'energy_ingest_upstream_connects_total{connection="0"}'),
    ).toBeGreaterThanOrEqual(2);
    expect(
      metricValue(metrics, 'energy_ingest_upstream_disconnects_total{connection="0"}'),
    ).toBeGreaterThanOrEqual(1);
  });
});
