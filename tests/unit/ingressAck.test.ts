import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, expect, it } from 'vitest';
import { Ingress } from '../../src/broker/ingress.js';
import { KnownBuildings } from '../../src/ingest/knownBuildings.js';
import { RateLimitedLog } from '../../src/log.js';
import { Metrics } from '../../src/metrics.js';
import { DurableLog } from '../../src/pipeline/durableLog.js';
import type { Pipeline } from '../../src/pipeline/pipeline.js';

// Contract section 7: a QoS 1/2 reading is acknowledged only once it is in the
// log. When the append itself fails, the publisher must not get its PUBACK:
// its connection is closed (an error to Aedes's callback) and it sends again.

const dir = mkdtempSync(join(tmpdir(), 'ei-ingress-ack-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('a reading whose append fails is not acknowledged at QoS 1 (QoS 0 has nothing to acknowledge)', async () => {
  const log = pino({ level: 'silent' });
  const durableLog = await DurableLog.open({ dir, durability: 'fsync', maxBytes: 16 * 1024 * 1024, log });
  await durableLog.close(); // every append now throws
  const ingress = new Ingress({
    limits: { maxPayloadBytes: 65536, maxFutureSkewS: 300, maxAgeS: 604800 },
    buildings: new KnownBuildings(true),
    backslashMode: 'escape',
    pipeline: { offerFramed() {} } as unknown as Pipeline,
    durableLog,
    deadLetter: async () => {},
    metrics: new Metrics(),
    log,
    rejectLog: new RateLimitedLog(log),
  });
  const answer = (qos: 0 | 1) =>
    new Promise<Error | null | undefined>((resolve) =>
      ingress.authorizePublish(
        null,
        { topic: 'sensors/building_001/f1/r1/power', payload: Buffer.from('{"value":1}'), qos } as never,
        resolve,
      ),
    );
  expect(await answer(1)).toBeInstanceOf(Error);
  expect(await answer(0)).toBeNull();
});
