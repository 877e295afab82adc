import { type ChildProcess, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, tempDir } from '../tests/helpers/services.js';
import type { Measured } from './cpuprofile.js';
import { sample } from './procStats.js';

// A fixed offered load (issue 15): 10 × 10 × rooms × 4 series publishing once
// a second (rooms 50: 20,000 readings/s) over 4 connections for `seconds`,
// QoS 0 or 1, into the daemon → InfluxDB 1.x or into bare Aedes; CPU time of
// the receiving process from /proc, counted until every reading is stored
// (received, for Aedes). Used by `npm run bench` (efficiency rows) and
// `npm run bench:profile` (the same runs under --cpu-prof).

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = join(ROOT, 'bin', 'energy-ingest.js');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface FixedLoad {
  readonly qos: 0 | 1;
  readonly seconds: number;
  readonly rooms: number;
  /** run the process under --cpu-prof, writing into this directory */
  readonly cpuProfDir?: string;
  /** extra environment for the daemon */
  readonly env?: Record<string, string>;
  /** bare Aedes with the daemon's quiet debug loggers (bench/bareBrokerQuiet.ts) */
  readonly quietDebug?: boolean;
}

const profFlags = (o: FixedLoad) => (o.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${o.cpuProfDir}`] : []);

const load = (url: string, qos: 0 | 1, seconds: number, rooms: number) => [
  BIN,
  'simulate',
  '--url',
  url,
  '--quiet',
  '--qos',
  String(qos),
  '--types',
  'temperature,humidity,power,co2',
  '--buildings',
  '10',
  '--floors',
  '10',
  '--rooms',
  String(rooms),
  '--interval-ms',
  '1000',
  '--duration-s',
  String(seconds),
  '--connections',
  '4',
  '--max-inflight',
  '200',
];

async function run(cmd: string, args: string[]): Promise<Record<string, number>> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (b) => {
    out += b;
  });
  await new Promise((resolve) => child.once('exit', resolve));
  return JSON.parse(out.trim().split('\n').at(-1) ?? '{}');
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 20_000);
  await exited;
  clearTimeout(t);
}

/** The daemon → InfluxDB 1.x under the fixed load; CPU from before the first connect until every reading is stored. */
export async function daemonRun(influxUrl: string, o: FixedLoad): Promise<Measured> {
  const dataDir = tempDir('profile');
  const [mqttPort, httpPort] = [await freePort(), await freePort()];
  const child = spawn('node', [...profFlags(o), BIN, 'start'], {
    env: {
      ...process.env,
      MQTT_PORT: String(mqttPort),
      HTTP_PORT: String(httpPort),
      DATA_DIR: dataDir,
      LOG_LEVEL: 'warn',
      INFLUX_URL: influxUrl,
      INFLUX_DATABASE: `fixed_${Date.now()}`,
      ...o.env,
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const status = async () =>
    (await (await fetch(`http://127.0.0.1:${httpPort}/api/status`)).json()) as { points_written: number };
  for (let i = 0; ; i++) {
    try {
      await status();
      break;
    } catch {
      if (i > 400) throw new Error('daemon did not start');
      await sleep(50);
    }
  }
  const cpu0 = sample(child.pid!).cpuSeconds;
  const t0 = performance.now();
  const sim = await run('node', load(`mqtt://127.0.0.1:${mqttPort}`, o.qos, o.seconds, o.rooms));
  const deadline = Date.now() + 60_000;
  while ((await status()).points_written < sim.sent! && Date.now() < deadline) await sleep(20);
  const end = sample(child.pid!);
  const cpu = end.cpuSeconds - cpu0;
  const peak = Math.round(end.peakRssBytes / 1024 ** 2);
  const written = (await status()).points_written;
  const windowUs = (performance.now() - t0) * 1000;
  await stop(child);
  rmSync(dataDir, { recursive: true, force: true });
  console.error(
    `daemon QoS ${o.qos}: ${written} of ${sim.sent} stored; ${((cpu / written) * 1e6).toFixed(1)} µs CPU per reading (/proc, from before the first connect until all stored)`,
  );
  return {
    readings: written,
    sent: sim.sent ?? 0,
    cpuUsPerReading: (cpu / written) * 1e6,
    windowUs,
    peakRssMb: peak,
  };
}

/** Bare Aedes 1.2 (bench/bareBroker.ts) under the same load; CPU until every message is received. */
export async function bareRun(o: FixedLoad): Promise<Measured> {
  const script = o.quietDebug ? 'bareBrokerQuiet.js' : 'bareBroker.js';
  const child = spawn('node', [...profFlags(o), join(ROOT, 'dist', 'bench', script), '0'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let port = 0;
  let count = 0;
  child.stdout!.on('data', (b: Buffer) => {
    for (const line of b.toString().split('\n')) {
      const [k, v] = line.split(' ');
      if (k === 'port') port = Number(v);
      if (k === 'count') count = Number(v);
    }
  });
  while (!port) await sleep(20);
  const cpu0 = sample(child.pid!).cpuSeconds;
  const t0 = performance.now();
  const sim = await run('node', load(`mqtt://127.0.0.1:${port}`, o.qos, o.seconds, o.rooms));
  const deadline = Date.now() + 30_000;
  while (count < sim.sent! && Date.now() < deadline) await sleep(20);
  const end = sample(child.pid!);
  const cpu = end.cpuSeconds - cpu0;
  const peak = Math.round(end.peakRssBytes / 1024 ** 2);
  const windowUs = (performance.now() - t0) * 1000;
  await stop(child);
  console.error(
    `bare Aedes QoS ${o.qos}: ${count} of ${sim.sent} received; ${((cpu / count) * 1e6).toFixed(1)} µs CPU per message`,
  );
  return {
    readings: count,
    sent: sim.sent ?? 0,
    cpuUsPerReading: (cpu / count) * 1e6,
    windowUs,
    peakRssMb: peak,
  };
}
