import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { eventually, freePort } from './services.js';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'energy-ingest.js');

export interface DaemonProcess {
  child: ChildProcess;
  mqttPort: number;
  httpPort: number;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  status(): Promise<Record<string, number>>;
  metrics(): Promise<string>;
}

/** The built daemon as a real child process (for kill -9, signals and restarts). */
export async function spawnDaemon(
  env: Record<string, string>,
  ports?: { mqttPort: number; httpPort: number },
  /** a command that execs the daemon, e.g. ['prlimit', '--nofile=300:300', '--'] (same pid) */
  wrapper: readonly string[] = [],
  /** how long it may take to answer /health (several nodes starting on a loaded machine need more) */
  upTimeoutMs = 20_000,
): Promise<DaemonProcess> {
  const mqttPort = ports?.mqttPort ?? (await freePort());
  const httpPort = ports?.httpPort ?? (await freePort());
  const argv = [...wrapper, 'node', BIN, 'start'];
  const child = spawn(argv[0]!, argv.slice(1), {
    env: {
      ...process.env,
      MQTT_PORT: String(mqttPort),
      HTTP_PORT: String(httpPort),
      LOG_LEVEL: 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const keep = (b: Buffer) => {
    out = (out + b.toString()).slice(-50_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const base = `http://127.0.0.1:${httpPort}`;
  await eventually(async () => (await fetch(`${base}/health`)).ok, upTimeoutMs, 'daemon up').catch((err) => {
    child.kill('SIGKILL');
    throw new Error(`${(err as Error).message}\n${out}`);
  });
  return {
    child,
    mqttPort,
    httpPort,
    output: () => out,
    exited,
    status: async () => (await (await fetch(`${base}/api/status`)).json()) as Record<string, number>,
    metrics: async () => (await fetch(`${base}/metrics`)).text(),
  };
}

export function metricValue(text: string, name: string): number {
  const m = new RegExp(`^${name.replace(/[{}"=]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}
