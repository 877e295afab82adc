import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { App } from '../../src/app.js';
import { loadConfig } from '../../src/config/load.js';
import { tempDir } from './services.js';

const run = promisify(execFile);

export interface TestApp {
  app: App;
  dataDir: string;
  mqttUrl: string;
  httpUrl: string;
  stop(): Promise<void>;
}

/** The real daemon, in process, on free ports with its own data dir. */
export async function startApp(env: Record<string, string> = {}, configPath?: string): Promise<TestApp> {
  const dataDir = tempDir('app');
  const cfg = loadConfig({
    configPath,
    env: {
      MQTT_PORT: '0',
      HTTP_PORT: '0',
      DATA_DIR: dataDir,
      LOG_LEVEL: 'silent',
      EI_PIPELINE_FLUSH_INTERVAL_MS: '100',
      ...env,
    },
  });
  const app = new App(cfg, pino({ level: cfg.log.level }));
  await app.start();
  return {
    app,
    dataDir,
    mqttUrl: `mqtt://127.0.0.1:${app.mqttPort}`,
    httpUrl: `http://127.0.0.1:${app.httpPort}`,
    async stop() {
      await app.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Publish with the real mosquitto_pub; resolves when it exits 0 (for QoS 1: PUBACK received). */
export async function mosquittoPub(
  port: number,
  topic: string,
  /** null sends an empty message (-n) */
  message: string | null,
  qos = 1,
  extra: string[] = [],
): Promise<void> {
  const body = message === null ? ['-n'] : ['-m', message];
  await run(
    'mosquitto_pub',
    ['-h', '127.0.0.1', '-p', String(port), '-q', String(qos), '-t', topic, ...body, ...extra],
    {
      timeout: 10_000,
    },
  );
}

export function deadLetters(dataDir: string): Array<Record<string, unknown>> {
  const dir = join(dataDir, 'deadletter');
  let files: string[] = [];
  try {
    files = readdirSync(dir);
  } catch {
    return [];
  }
  return files.flatMap((f) =>
    readFileSync(join(dir, f), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>),
  );
}
