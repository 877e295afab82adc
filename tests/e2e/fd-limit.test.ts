import { readdirSync, rmSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import mqtt from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { afterAll, expect, inject, it } from 'vitest';
import { type DaemonProcess, metricValue, spawnDaemon } from '../helpers/daemon.js';
import { connectPacket } from '../helpers/rawMqtt.js';
import { eventually, influxQuery, tempDir } from '../helpers/services.js';

// Contract section 7, "Overload never stops the process": the daemon runs under
// `prlimit --nofile=300:300` with mqtt.maxConnections 10000. The connection cap
// follows the fd limit (warned at start), the excess gets CONNACK 0x03, and
// when the descriptors run out anyway (idle HTTP connections hold them all)
// the durable log keeps taking QoS 1 readings across segment rolls: no crash,
// nothing acknowledged is lost.

const NOFILE = 300;
const influxUrl = inject('influx1Url');
const db = 'fd_limit';
const dataDir = tempDir('fdlimit');
let daemon: DaemonProcess | undefined;
const sockets: Socket[] = [];
afterAll(() => {
  for (const s of sockets) s.destroy();
  if (daemon && daemon.child.exitCode === null) daemon.child.kill('SIGKILL');
  rmSync(dataDir, { recursive: true, force: true });
});

/** CONNECT on a raw socket: the CONNACK return code, or null if the socket closed (or stayed silent) without one. */
function mqttConnect(port: number, clientId: string): Promise<number | null> {
  return new Promise((resolve) => {
    const socket = netConnect(port, '127.0.0.1');
    sockets.push(socket);
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    const done = (code: number | null) => {
      clearTimeout(timer);
      resolve(code);
    };
    const timer = setTimeout(() => done(null), 5000);
    parser.on('packet', (p) => {
      if (p.cmd === 'connack') done(p.returnCode ?? 0);
    });
    socket.on('data', (d) => parser.parse(d));
    socket.on('error', () => done(null));
    socket.on('close', () => done(null));
    socket.write(mqttPacket.generate(connectPacket(clientId)));
  });
}

async function publishAll(client: mqtt.MqttClient, floor: string, count: number): Promise<number> {
  const base = Date.now() - 60_000;
  let next = 0;
  let acked = 0;
  await Promise.all(
    Array.from({ length: 50 }, async () => {
      while (next < count) {
        const seq = next++;
        // ~250 bytes of log per reading: 10,000 of them roll the 1 MiB segments several times
        await client.publishAsync(
          `sensors/building_001/${floor}/r${seq % 50}/power`,
          JSON.stringify({ value: seq, timestamp: base + seq, note: 'x'.repeat(60) }),
          { qos: 1 },
        );
        acked++;
      }
    }),
  );
  return acked;
}

async function storedCount(floor: string): Promise<number> {
  const rows = await influxQuery(
    influxUrl,
    db,
    `SELECT count(value) FROM sensor_readings WHERE floor = '${floor}'`,
  );
  return Number(rows[0]?.count ?? 0);
}

function openFds(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0; // gone: the assertions on the exit say so
  }
}

it('under prlimit --nofile=300: capped connections, CONNACK 0x03 beyond, no crash when descriptors run out, every QoS 1 reading stored', async () => {
  daemon = await spawnDaemon(
    {
      INFLUX_URL: influxUrl,
      INFLUX_API: 'v1',
      INFLUX_DATABASE: db,
      DATA_DIR: dataDir,
      EI_MQTT_MAX_CONNECTIONS: '10000',
      EI_MQTT_CONNECT_RATE_PER_IP: '100000',
      // 16 MiB budget: 1 MiB segments, so the readings below roll the log while descriptors are short
      EI_PIPELINE_MAX_LOG_BYTES: '16MiB',
      EI_PIPELINE_FLUSH_INTERVAL_MS: '100',
      EI_PIPELINE_RETRY_MAX_MS: '2000',
    },
    undefined,
    ['prlimit', `--nofile=${NOFILE}:${NOFILE}`, '--'],
  );
  const d = daemon;
  const pid = d.child.pid!;
  expect(d.output()).toMatch(/mqtt\.maxConnections 10000 capped at \d+/);

  const publisher = await mqtt.connectAsync(`mqtt://127.0.0.1:${d.mqttPort}`, {
    protocolVersion: 4,
    reconnectPeriod: 0,
    clientId: 'fd-publisher',
  });
  publisher.on('error', () => {});

  // 1. connect until refused: the excess gets CONNACK 0x03 (too many connections), the rest 0
  const codes: Array<number | null> = [];
  for (let i = 0; i < 2 * NOFILE && codes.filter((c) => c !== 0).length < 20; i += 20) {
    codes.push(
      ...(await Promise.all(Array.from({ length: 20 }, (_, j) => mqttConnect(d.mqttPort, `c${i + j}`)))),
    );
  }
  const accepted = codes.filter((c) => c === 0).length;
  expect(codes.filter((c) => c === 3).length, `codes: ${JSON.stringify(codes)}`).toBeGreaterThanOrEqual(20);
  expect(codes.filter((c) => c !== 0 && c !== 3)).toEqual([]);
  expect(accepted).toBeLessThan(NOFILE - 100);
  // never over the cap, even for CONNECTs arriving together (the publisher holds one connection)
  const cap = Number(/mqtt\.maxConnections 10000 capped at (\d+)/.exec(d.output())![1]);
  expect(accepted + 1).toBeLessThanOrEqual(cap);
  expect(d.child.exitCode).toBeNull();
  expect((await fetch(`http://127.0.0.1:${d.httpPort}/health`)).ok).toBe(true);
  expect(await publishAll(publisher, 'capped', 2000)).toBe(2000);

  // 1b. sockets that never send CONNECT are closed on accept beyond the socket budget (cap + reserve/4),
  //     not held for connectTimeoutMs
  const silent = Array.from({ length: 120 }, () => {
    const s = netConnect(d.mqttPort, '127.0.0.1');
    s.on('error', () => {});
    sockets.push(s);
    return new Promise<boolean>((resolve) => {
      s.on('close', () => resolve(true));
      setTimeout(() => resolve(false), 3000);
    });
  });
  const closedAtOnce = (await Promise.all(silent)).filter(Boolean).length;
  expect(closedAtOnce).toBeGreaterThanOrEqual(120 - 64);
  expect(closedAtOnce).toBeLessThan(120);
  expect(metricValue(await d.metrics(), 'energy_ingest_auth_refused_total{reason="too_many_sockets"}')).toBe(
    closedAtOnce,
  );
  for (const s of sockets.splice(0)) s.destroy();

  // 2. descriptors run out anyway: idle HTTP connections take every one left (topped up while
  //    the daemon frees some, e.g. its idle InfluxDB connections)
  const fill = () => {
    for (let i = 0; i < 50 && openFds(pid) < NOFILE - 1; i++) {
      const s = netConnect(d.httpPort, '127.0.0.1');
      s.on('error', () => {});
      sockets.push(s);
    }
  };
  fill();
  const filler = setInterval(fill, 100);
  // and new connections keep knocking (as at 20,000 clients): whatever descriptor the daemon
  // frees for a moment (closing one log segment to open the next) an accept may take first
  let churning = true;
  const churn = () => {
    if (!churning) return;
    const s = netConnect(d.httpPort, '127.0.0.1');
    s.on('error', () => {});
    s.on('close', churn);
    setTimeout(() => s.destroy(), 200);
  };
  for (let i = 0; i < 30; i++) churn();
  let exhaustedSamples = 0;
  const sampler = setInterval(() => {
    if (openFds(pid) >= NOFILE - 2) exhaustedSamples++;
  }, 50);
  try {
    await eventually(async () => openFds(pid) >= NOFILE - 2, 5000, 'descriptors exhausted');
    // QoS 1 readings keep being acknowledged from the durable log, whose segments roll meanwhile
    const died = d.exited.then(({ code, signal }) => {
      throw new Error(`daemon exited (${code ?? signal}):\n${d.output().slice(-3000)}`);
    });
    expect(await Promise.race([publishAll(publisher, 'exhausted', 10_000), died])).toBe(10_000);
    expect(d.child.exitCode, d.output()).toBeNull();
  } finally {
    churning = false;
    clearInterval(filler);
    clearInterval(sampler);
  }
  expect(exhaustedSamples).toBeGreaterThan(0);

  // 3. the connections go away: everything acknowledged reaches InfluxDB, nothing crashed
  for (const s of sockets.splice(0)) s.destroy();
  await eventually(async () => (await fetch(`http://127.0.0.1:${d.httpPort}/health`)).ok, 10_000, '/health');
  expect(await publishAll(publisher, 'after', 1000)).toBe(1000);
  await eventually(async () => (await storedCount('capped')) === 2000, 30_000, 'capped readings stored');
  await eventually(async () => (await storedCount('after')) === 1000, 30_000, 'later readings stored');
  await eventually(async () => (await storedCount('exhausted')) === 10_000, 30_000, 'all readings stored');
  const m = await d.metrics();
  console.log(
    `accepted ${accepted} of ${codes.length} connections; ${exhaustedSamples} samples at the fd limit;`,
    m
      .split('\n')
      .filter((l) => /^energy_ingest_(io_errors|auth_refused|write_errors)_total/.test(l))
      .join('; '),
  );
  expect(metricValue(m, 'energy_ingest_auth_refused_total{reason="too_many_connections"}')).toBeGreaterThan(
    0,
  );
  await publisher.endAsync();
  d.child.kill('SIGTERM');
  expect((await d.exited).code, d.output()).toBe(0);
}, 60_000);
