import type { TestProject } from 'vitest/node';
import { type Service, startInflux1, startPostgres, startRedis, startVictoria } from './services.js';

// One InfluxDB 1.x, VictoriaMetrics, PostgreSQL and Redis for the whole run;
// tests isolate themselves by database name, measurement tags or key prefix.
declare module 'vitest' {
  export interface ProvidedContext {
    influx1Url: string;
    victoriaUrl: string;
    postgresUrl: string;
    redisUrl: string;
  }
}

let services: Service[] = [];

export async function setup(project: TestProject): Promise<void> {
  const started = await Promise.allSettled([startInflux1(), startVictoria(), startPostgres(), startRedis()]);
  services = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = started.find((s) => s.status === 'rejected');
  if (failed) {
    await teardown();
    throw failed.reason;
  }
  project.provide('influx1Url', services[0]!.url);
  project.provide('victoriaUrl', services[1]!.url);
  project.provide('postgresUrl', services[2]!.url);
  project.provide('redisUrl', services[3]!.url);
}

export async function teardown(): Promise<void> {
  await Promise.all(services.map((s) => s.stop()));
}
