import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, expect, it } from 'vitest';
import { Ingress } from '../../src/broker/ingress.js';
import type { ReadingConsumer } from '../../src/ingest/consumer.js';
import { KnownBuildings } from '../../src/ingest/knownBuildings.js';
import type { Reading } from '../../src/ingest/reading.js';
import { RateLimitedLog } from '../../src/log.js';
import { Metrics } from '../../src/metrics.js';
import { DurableLog } from '../../src/pipeline/durableLog.js';
import type { Pipeline } from '../../src/pipeline/pipeline.js';

// Issue 13.5: the ingress's fan-out is a list of named consumers, each
// isolated. One that throws is counted and logged; the others still get the
// readings; the publisher is acknowledged as usual, and only after the fsync.

const dir = mkdtempSync(join(tmpdir(), 'ei-consumers-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('a throwing consumer is counted and never stops the others nor the QoS 1 acknowledgement', async () => {
  const log = pino({ level: 'silent' });
  const durableLog = await DurableLog.open({ dir, durability: 'fsync', maxBytes: 16 * 1024 * 1024, log });
  const metrics = new Metrics();
  const seen: string[] = [];
  const failing: ReadingConsumer = {
    name: 'failing',
    consume() {
      throw new Error('consumer bug');
    },
  };
  const recorder = (name: string): ReadingConsumer => ({
    name,
    consume(readings: readonly Reading[], _at: number, logEnd: number) {
      expect(logEnd).toBeGreaterThan(0);
      for (const r of readings) seen.push(`${name}:${r.sensorType}`);
    },
  });
  const ingress = new Ingress({
    limits: { maxPayloadBytes: 65536, maxFutureSkewS: 300, maxAgeS: 604800 },
    buildings: new KnownBuildings(true),
    backslashMode: 'escape',
    pipeline: { offerFramed() {} } as unknown as Pipeline,
    durableLog,
    consumers: [recorder('first'), failing, recorder('last')],
    deadLetter: async () => {},
    metrics,
    log,
    rejectLog: new RateLimitedLog(log),
  });
  const publish = (qos: 0 | 1, type: string) =>
    new Promise<{ err: Error | null | undefined; writtenAtAck: number }>((resolve) =>
      ingress.authorizePublish(
        null,
        { topic: `sensors/building_001/f1/r1/${type}`, payload: Buffer.from('{"value":1}'), qos } as never,
        (err) => resolve({ err, writtenAtAck: durableLog.written }),
      ),
    );
  const endBefore = durableLog.endOffset;
  const q1 = await publish(1, 'power');
  expect(q1.err).toBeNull();
  // acknowledged only once the record is on disk
  expect(q1.writtenAtAck).toBeGreaterThan(endBefore);
  expect(q1.writtenAtAck).toBe(durableLog.endOffset);
  const q0 = await publish(0, 'temperature');
  expect(q0.err).toBeNull();
  expect(seen).toEqual(['first:power', 'last:power', 'first:temperature', 'last:temperature']);
  expect(metrics.consumerErrors.get({ consumer: 'failing' })).toBe(2);
  expect(metrics.readingsAccepted.get()).toBe(2);
  await durableLog.close();
});
