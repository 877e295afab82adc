import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, startInflux1, tempDir } from '../tests/helpers/services.js';
import { type Measured, report } from './cpuprofile.js';
import { sample } from './procStats.js';

// `npm run bench:profile`: where each microsecond of a reading goes (issue 15).
// A fixed offered load (PROFILE_RATE readings/s from 20,000 series at 1 Hz by
// default, PROFILE_QOS 0|1, PROFILE_S seconds) into the daemon → InfluxDB 1.x,
// and the same load into bare Aedes; each process runs under --cpu-prof and
// its CPU time is counted until every reading is stored (the daemon) or
// received (Aedes). Prints CPU µs per reading for both, then the daemon's
// self time per reading broken down by where the code lives.

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = join(ROOT, 'bin', 'energy-ingest.js');
const QOS = process.env.PROFILE_QOS ?? '0';
const SECONDS = Number(process.env.PROFILE_S ?? 15);
const ROOMS = Number(process.env.PROFILE_ROOMS ?? 50); // 10 × 10 × rooms × 4 types series at 1 Hz
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const load = (url: string) => [
  BIN,
  'simulate',
  '--url',
  url,
  '--quiet',
  '--qos',
  QOS,
  '--types',
  'temperature,humidity,power,co2',
  '--buildings',
  '10',
  '--floors',
  '10',
  '--rooms',
  String(ROOMS),
  '--interval-ms',
  '1000',
  '--duration-s',
  String(SECONDS),
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

async function daemonRun(influxUrl: string, profDir: string): Promise<Measured> {
  const dataDir = tempDir('profile');
  const [mqttPort, httpPort] = [await freePort(), await freePort()];
  const child = spawn('node', [`--cpu-prof`, `--cpu-prof-dir=${profDir}`, BIN, 'start'], {
    env: {
      ...process.env,
      MQTT_PORT: String(mqttPort),
      HTTP_PORT: String(httpPort),
      DATA_DIR: dataDir,
      LOG_LEVEL: 'warn',
      INFLUX_URL: influxUrl,
      INFLUX_DATABASE: `profile_${Date.now()}`,
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
  const sim = await run('node', load(`mqtt://127.0.0.1:${mqttPort}`));
  const deadline = Date.now() + 60_000;
  while ((await status()).points_written < sim.sent! && Date.now() < deadline) await sleep(20);
  const cpu = sample(child.pid!).cpuSeconds - cpu0;
  const written = (await status()).points_written;
  const windowUs = (performance.now() - t0) * 1000;
  await stop(child);
  rmSync(dataDir, { recursive: true, force: true });
  console.log(
    `daemon QoS ${QOS}: ${written} of ${sim.sent} stored; ${((cpu / written) * 1e6).toFixed(1)} µs CPU per reading (/proc, from before the first connect until all stored)`,
  );
  return { readings: written, cpuUsPerReading: (cpu / written) * 1e6, windowUs };
}

async function bareRun(profDir: string): Promise<Measured> {
  const child = spawn(
    'node',
    [`--cpu-prof`, `--cpu-prof-dir=${profDir}`, join(ROOT, 'dist', 'bench', 'bareBroker.js'), '0'],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
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
  const sim = await run('node', load(`mqtt://127.0.0.1:${port}`));
  const deadline = Date.now() + 30_000;
  while (count < sim.sent! && Date.now() < deadline) await sleep(20);
  const cpu = sample(child.pid!).cpuSeconds - cpu0;
  const windowUs = (performance.now() - t0) * 1000;
  await stop(child);
  console.log(
    `bare Aedes QoS ${QOS}: ${count} of ${sim.sent} received; ${((cpu / count) * 1e6).toFixed(1)} µs CPU per message`,
  );
  return { readings: count, cpuUsPerReading: (cpu / count) * 1e6, windowUs };
}

const only = process.env.PROFILE_ONLY; // daemon | bare
const influx = only === 'bare' ? null : await startInflux1();
try {
  for (const which of ['bare', 'daemon'] as const) {
    if (only && only !== which) continue;
    const dir = mkdtempSync(join(tmpdir(), `prof-${which}-`));
    const m = which === 'bare' ? await bareRun(dir) : await daemonRun(influx!.url, dir);
    const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
    // written synchronously: the services helper may end the process right after
    if (file) writeSync(1, report(which === 'bare' ? 'bare Aedes' : 'daemon', join(dir, file), m));
    if (!process.env.PROFILE_KEEP) rmSync(dir, { recursive: true, force: true });
    else console.log(`profile kept in ${dir}`);
  }
} finally {
  await influx?.stop();
}
