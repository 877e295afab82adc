import type { TestProject } from 'vitest/node';
import { type Service, startInflux1, startVictoria } from './services.js';

// One InfluxDB 1.x and one VictoriaMetrics for the whole run; tests isolate
// themselves by database name / measurement tags.
declare module 'vitest' {
  export interface ProvidedContext {
    influx1Url: string;
    victoriaUrl: string;
  }
}

let services: Service[] = [];

export async function setup(project: TestProject): Promise<void> {
  services = await Promise.all([startInflux1(), startVictoria()]);
  project.provide('influx1Url', services[0]!.url);
  project.provide('victoriaUrl', services[1]!.url);
}

export async function teardown(): Promise<void> {
  await Promise.all(services.map((s) => s.stop()));
}
