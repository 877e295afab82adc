import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { type DaemonProcess, metricValue, spawnDaemon } from '../helpers/daemon.js';
import { eventually, tempDir } from '../helpers/services.js';

// Issue 11 item 8: a sensor flooding bad payloads full of control bytes must
// not write ~6× its payload bytes to DATA_DIR/deadletter (each control byte
// became `\u00XX` in JSON), nor more than the dead-letter disk budget; what
// does not fit is dropped and counted, the daemon stays responsive and good
// readings are still stored. Through a real MQTT client and the built daemon.

const BUDGET = 2 * 1024 * 1024;

/** valid UTF-8, not JSON: rejected as bad_json and dead-lettered with its payload */
function controlPayload(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = 1 + ((i + seed) % 31);
  return b;
}

function deadLetterBytes(dataDir: string): { bytes: number; files: string[] } {
  const dir = join(dataDir, 'deadletter');
  let files: string[] = [];
  try {
    files = readdirSync(dir);
  } catch {
    return { bytes: 0, files };
  }
  return { bytes: files.reduce((n, f) => n + statSync(join(dir, f)).size, 0), files };
}

let daemon: DaemonProcess | undefined;
afterEach(async () => {
  daemon?.child.kill('SIGKILL');
  await daemon?.exited;
  daemon = undefined;
});

describe('dead letters under a flood of bad payloads', () => {
  it('store payloads compactly, stay within their disk budget, count drops, keep the daemon responsive', async () => {
    const dataDir = tempDir('dl-budget');
    daemon = await spawnDaemon({
      DATA_DIR: dataDir,
      EI_PIPELINE_DEAD_LETTER_MAX_BYTES: String(BUDGET),
      EI_PIPELINE_DEAD_LETTER_MAX_FILE_BYTES: String(256 * 1024),
    });
    const d = daemon;
    const base = `http://127.0.0.1:${d.httpPort}`;
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${d.mqttPort}`, {
      protocolVersion: 4,
      clientId: 'flooder',
    });
    try {
      // 1. a few bad payloads, well inside the budget: at most ~1.4× their bytes on disk
      const SMALL = 20;
      const SIZE = 16 * 1024;
      for (let i = 0; i < SMALL; i++)
        await client.publishAsync('sensors/building_001/F1/r1/power', controlPayload(SIZE, i), { qos: 1 });
      const first = deadLetterBytes(dataDir);
      expect(first.bytes).toBeGreaterThan(0);
      expect(first.bytes).toBeLessThanOrEqual(1.4 * SMALL * SIZE);
      const line = readFileSync(join(dataDir, 'deadletter', first.files[0]!), 'utf8').split('\n')[0]!;
      const rec = JSON.parse(line) as Record<string, unknown>;
      expect(rec).toMatchObject({ reason: 'bad_json', payload_encoding: 'base64' });
      expect(Buffer.from(rec.payload as string, 'base64').equals(controlPayload(SIZE, 0))).toBe(true);

      // 2. the flood: 2,000 × 16 KiB at QoS 0 (32 MB offered) while /health is polled
      const FLOOD = 2000;
      let slowest = 0;
      let polling = true;
      const poller = (async () => {
        while (polling) {
          const t0 = Date.now();
          const res = await fetch(`${base}/health`);
          expect(res.ok).toBe(true);
          slowest = Math.max(slowest, Date.now() - t0);
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      for (let i = 0; i < FLOOD; i++)
        client.publish('sensors/building_001/F1/r1/power', controlPayload(SIZE, i));
      // a QoS 1 publish behind them: its PUBACK comes after the ones before it were handled
      await client.publishAsync('sensors/building_001/F1/r1/power', controlPayload(SIZE, 7), { qos: 1 });
      const total = SMALL + FLOOD + 1;
      const metrics = await eventually(
        async () => {
          const m = await d.metrics();
          const written = metricValue(m, 'energy_ingest_dead_lettered_total');
          const dropped =
            metricValue(m, 'energy_ingest_dead_letters_dropped_total{reason="budget"}') +
            metricValue(m, 'energy_ingest_dead_letters_dropped_total{reason="queue_full"}');
          return written + dropped >= total && m;
        },
        30_000,
        'every rejection written or counted as dropped',
      );
      polling = false;
      await poller;

      const after = deadLetterBytes(dataDir);
      // the budget, plus at most one batch of records written before it was found full
      expect(after.bytes).toBeLessThanOrEqual(BUDGET * 1.05);
      expect(after.bytes).toBeLessThanOrEqual(1.4 * total * SIZE);
      expect(after.files.length).toBeGreaterThan(1); // rotated
      expect(
        metricValue(metrics, 'energy_ingest_dead_letters_dropped_total{reason="budget"}'),
      ).toBeGreaterThan(0);
      expect(metricValue(metrics, 'energy_ingest_messages_rejected_total{reason="bad_json"}')).toBe(total);
      expect(slowest).toBeLessThan(5000);
      console.info(
        `dead letters: first ${first.bytes} bytes for ${SMALL * SIZE}; then ${after.bytes} bytes in ${after.files.length} files for ${total * SIZE} payload bytes; ` +
          `dropped ${metricValue(metrics, 'energy_ingest_dead_letters_dropped_total{reason="budget"}')} (budget), ` +
          `${metricValue(metrics, 'energy_ingest_dead_letters_dropped_total{reason="queue_full"}')} (queue); slowest /health ${slowest} ms`,
      );

      // 3. good readings are still accepted and stored
      for (let i = 0; i < 10; i++)
        await client.publishAsync('sensors/building_001/F1/r1/power', JSON.stringify({ value: i }), {
          qos: 1,
        });
      await eventually(
        async () => ((await d.status()).points_written ?? 0) >= 10,
        15_000,
        'good readings written',
      );
    } finally {
      await client.endAsync(true);
    }
  }, 60_000);
});
