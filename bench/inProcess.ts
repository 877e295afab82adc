import { pino } from 'pino';
import { App } from '../src/app.js';
import type { Ingress } from '../src/broker/ingress.js';
import { loadConfig } from '../src/config/load.js';
import { tempDir } from '../tests/helpers/services.js';

/** The real daemon in this process (embedded defaults, its sink the given InfluxDB 1.x), and its ingress. */
export async function startInProcess(
  influxUrl: string,
  name: string,
): Promise<{ app: App; ingress: Ingress }> {
  const cfg = loadConfig({
    env: {
      MQTT_PORT: '0',
      HTTP_PORT: '0',
      DATA_DIR: tempDir(name),
      LOG_LEVEL: 'warn',
      INFLUX_URL: influxUrl,
      INFLUX_DATABASE: name,
    },
  });
  const app = new App(cfg, pino({ level: 'warn' }));
  await app.start();
  return { app, ingress: (app as unknown as { broker: { ingress: Ingress } }).broker.ingress };
}
