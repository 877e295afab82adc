import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Metrics } from '../../src/metrics.js';
import { DurableLog } from '../../src/pipeline/durableLog.js';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import { BatchWriter } from '../../src/pipeline/writer.js';
import { fullJitterBackoff } from '../../src/retry.js';
import type { Sink, WriteResult } from '../../src/sinks/sink.js';

const silent = pino({ level: 'silent' });
const opened: DurableLog[] = [];
afterEach(async () => {
  for (const l of opened.splice(0)) await l.close().catch(() => {});
});

class FakeSink implements Sink {
  readonly name = 'fake';
  readonly backslashMode = 'escape' as const;
  stored: string[] = [];
  calls: number[] = [];
  gate: Promise<void> = Promise.resolve();
  constructor(public answer: (lines: readonly string[]) => WriteResult = () => ({ kind: 'ok' })) {}
  async connect() {}
  async ping() {}
  async close() {}
  async write(body: Buffer, count: number): Promise<WriteResult> {
    await this.gate;
    const lines = body.toString('utf8').split('\n');
    expect(lines.length).toBe(count);
    this.calls.push(lines.length);
    const r = this.answer(lines);
    if (r.kind === 'ok') this.stored.push(...lines);
    return r;
  }
}

async function setup(
  sink: FakeSink,
  o: {
    batchSize?: number;
    flushIntervalMs?: number;
    maxInflightBatches?: number;
    dir?: string;
    maxBytes?: number;
  } = {},
) {
  const dir = o.dir ?? mkdtempSync(join(tmpdir(), 'ei-pipe-'));
  const log = await DurableLog.open({
    dir,
    durability: 'relaxed',
    maxBytes: o.maxBytes ?? 64 * 1024 * 1024,
    log: silent,
  });
  opened.push(log);
  const writer = new BatchWriter({
    sink,
    retry: fullJitterBackoff(1, 5),
    metrics: new Metrics(),
    log: silent,
    deadLetter: async () => {},
    sourceOf: async () => null,
  });
  const pipeline = new Pipeline(
    {
      batchSize: o.batchSize ?? 3,
      flushIntervalMs: o.flushIntervalMs ?? 20,
      maxInflightBatches: o.maxInflightBatches ?? 2,
      sinkName: 'fake',
    },
    writer,
    log,
    silent,
  );
  pipeline.start();
  const publish = (lines: string[]) => {
    const receivedAtMs = Date.now();
    const a = log.append({ topic: 't', clientId: 'c', receivedAtMs, payload: lines.join(','), lines });
    pipeline.offer(lines, receivedAtMs, a.start, a.end);
    return a;
  };
  return { dir, log, pipeline, publish };
}

const until = async (cond: () => boolean, ms = 3000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timeout');
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe('pipeline over the durable log', () => {
  it('cuts batches at batchSize and on the flush interval, and commits the log behind them', async () => {
    const sink = new FakeSink();
    const { pipeline, publish, log } = await setup(sink);
    publish(['a', 'b']);
    const last = publish(['c', 'd']);
    await until(() => sink.calls.length === 1);
    expect(sink.calls).toEqual([3]);
    await until(() => sink.calls.length === 2);
    expect(sink.stored).toEqual(['a', 'b', 'c', 'd']);
    await until(() => log.committed('fake') === last.end);
    expect(pipeline.backlog).toBe(0);
  });

  it('never commits past a batch that is not written yet', async () => {
    const sink = new FakeSink();
    let release!: () => void;
    sink.gate = new Promise((r) => {
      release = r;
    });
    const { publish, log } = await setup(sink, { batchSize: 2, maxInflightBatches: 4 });
    publish(['a', 'b']);
    publish(['c', 'd']);
    await new Promise((r) => setTimeout(r, 50));
    expect(log.committed('fake')).toBe(0);
    release();
    await until(() => sink.stored.length === 4);
    await until(() => log.committed('fake') === log.endOffset);
  });

  it('a record split across batches is committed only with its last line', async () => {
    const sink = new FakeSink();
    let release!: () => void;
    const { publish, log } = await setup(sink, { batchSize: 2, maxInflightBatches: 1 });
    sink.gate = new Promise((r) => {
      release = r;
    });
    const a = publish(['a1', 'a2', 'a3']);
    // first batch [a1, a2] is held at the gate; [a3] waits for the flush interval
    await new Promise((r) => setTimeout(r, 40));
    expect(log.committed('fake')).toBe(0);
    release();
    await until(() => sink.stored.length === 3);
    await until(() => log.committed('fake') === a.end);
  });

  it('when the sink falls behind, keeps nothing more in memory and catches up from the log, oldest first', async () => {
    const sink = new FakeSink();
    let release!: () => void;
    sink.gate = new Promise((r) => {
      release = r;
    });
    const { pipeline, publish, log } = await setup(sink, { batchSize: 10, maxInflightBatches: 1 });
    const all: string[] = [];
    for (let i = 0; i < 500; i++) {
      const lines = [`l${i}a`, `l${i}b`];
      all.push(...lines);
      publish(lines);
    }
    // 1 running + 8 queued batches of 10, plus the one being filled: the rest stays on disk
    expect(pipeline.backlog).toBeLessThanOrEqual(100);
    expect(pipeline.catchingUp).toBe(true);
    release();
    await until(() => sink.stored.length === all.length, 10_000);
    expect(sink.stored).toEqual(all);
    await until(() => log.committed('fake') === log.endOffset);
    expect(pipeline.catchingUp).toBe(false);
    // and the tail path works again
    publish(['after']);
    await until(() => sink.stored.at(-1) === 'after');
  });

  it('after a restart, sends again everything past the committed offset', async () => {
    const down = new FakeSink(() => ({ kind: 'retry', message: 'down' }));
    const first = await setup(down, { batchSize: 2 });
    first.publish(['a', 'b']);
    first.publish(['c']);
    const { unwritten } = await first.pipeline.drain(Date.now() + 100);
    expect(unwritten).toBeGreaterThan(0);
    await first.log.close();

    const up = new FakeSink();
    const second = await setup(up, { dir: first.dir });
    await until(() => up.stored.length === 3);
    expect(up.stored).toEqual(['a', 'b', 'c']);
    await until(() => second.log.committed('fake') === second.log.endOffset);
  });
});
