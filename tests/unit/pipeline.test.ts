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

  it('batches written behind a slower one keep no points in memory while they wait to be committed', async () => {
    // the first write hangs; the ones after it finish: they wait in order for the commit, without their points
    const sink = new FakeSink();
    let release!: () => void;
    const first = new Promise<void>((r) => {
      release = r;
    });
    let calls = 0;
    const write = sink.write.bind(sink);
    sink.write = async (body, count) => {
      if (calls++ === 0) await first;
      return write(body, count);
    };
    const { pipeline, publish, log } = await setup(sink, { batchSize: 2, maxInflightBatches: 4 });
    for (let i = 0; i < 4; i++) publish([`l${i}a`, `l${i}b`]);
    await until(() => sink.stored.length === 6);
    expect(log.committed('fake')).toBe(0);
    // only the hanging batch's two points are still held
    expect(pipeline.backlog).toBe(2);
    release();
    await until(() => log.committed('fake') === log.endOffset);
    expect(pipeline.backlog).toBe(0);
  });

  it('catching up from the log, reads ahead only as many batches as are being written', async () => {
    const sink = new FakeSink();
    let release!: () => void;
    sink.gate = new Promise((r) => {
      release = r;
    });
    const { pipeline, publish, log } = await setup(sink, { batchSize: 10, maxInflightBatches: 2 });
    // 4 KB lines: one read of the log (256 KiB) holds about 6 batches, the log 80
    const pad = 'x'.repeat(4000);
    for (let i = 0; i < 400; i++) publish([`l${i}a${pad}`, `l${i}b${pad}`]);
    expect(pipeline.catchingUp).toBe(true);
    // once the batches the tail queued are written, each write sees what the reader holds in memory
    const held: number[] = [];
    const write = sink.write.bind(sink);
    sink.write = async (body, count) => {
      held.push(pipeline.backlog);
      await new Promise((r) => setTimeout(r, 2));
      return write(body, count);
    };
    release();
    await until(() => log.committed('fake') === log.endOffset, 10_000);
    expect(sink.stored.length).toBe(800);
    // the tail queued 2 + 16 batches: from the 19th write on, what the reader read is in memory
    const late = held.slice(19);
    expect(late.length).toBeGreaterThan(40);
    // 2 being written + 2 queued + one read (about 64 lines) + the batch being filled; before,
    // the reader refilled the tail's 8 queued per writer from disk (up to 180 + one read)
    expect(Math.max(...late)).toBeLessThanOrEqual(4 * 10 + 64 + 10);
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
