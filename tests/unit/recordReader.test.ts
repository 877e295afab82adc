import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, expect, it } from 'vitest';
import { DurableLog } from '../../src/pipeline/durableLog.js';
import { recordReader } from '../../src/pipeline/recordReader.js';

// Issue 15: a refused line's message is read back from the durable log by its
// record's offset (batches no longer hold a source per point).

const dir = mkdtempSync(join(tmpdir(), 'ei-recreader-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('finds the message of any record, small or larger than one read, written or still in memory', async () => {
  const log = await DurableLog.open({
    dir,
    durability: 'relaxed',
    maxBytes: 64 * 1024 * 1024,
    log: pino({ level: 'silent' }),
  });
  const starts: number[] = [];
  const payloads: string[] = [];
  for (let i = 0; i < 600; i++) {
    // every 100th record is bigger than the reader's first 64 KiB read
    const payload = i % 100 === 50 ? `big-${i}-${'x'.repeat(100_000)}` : `{"value":${i}}`;
    const a = log.append(
      { topic: `sensors/1/f/r/t${i}`, clientId: `c${i % 3}`, receivedAtMs: i, payload, lines: [`l${i}`] },
      false,
    );
    starts.push(a.start);
    payloads.push(payload);
  }
  const sourceOf = recordReader(log);
  // asked before the write of these records has happened: it waits for it
  for (const i of [599, 0, 1, 2, 50, 51, 150, 300, 301, 598]) {
    expect(await sourceOf(starts[i]!)).toEqual({
      topic: `sensors/1/f/r/t${i}`,
      clientId: `c${i % 3}`,
      payload: payloads[i],
    });
  }
  // not a record boundary: nothing, never a neighbour's message
  expect(await sourceOf(starts[10]! + 1)).toBeNull();
  await log.close();
});
