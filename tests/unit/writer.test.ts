import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { Metrics } from '../../src/metrics.js';
import { LineBatch } from '../../src/pipeline/batch.js';
import type { DeadLetterRecord } from '../../src/pipeline/deadLetter.js';
import { BatchWriter } from '../../src/pipeline/writer.js';
import { fullJitterBackoff, retryPolicy } from '../../src/retry.js';
import type { Sink, WriteResult } from '../../src/sinks/sink.js';
import { classifyStatus, networkMessage, parseRetryAfter } from '../../src/sinks/sink.js';

/** A fake sink (unit tests use fakes of the sink interface; e2e tests use real servers). */
class FakeSink implements Sink {
  readonly name = 'fake';
  readonly backslashMode = 'escape' as const;
  stored: string[] = [];
  calls: number[] = [];
  constructor(private readonly answer: (lines: readonly string[], call: number) => WriteResult) {}
  async connect() {}
  async ping() {}
  async close() {}
  async write(body: Buffer, count: number): Promise<WriteResult> {
    const lines = body.toString('utf8').split('\n');
    expect(lines.length).toBe(count);
    this.calls.push(lines.length);
    const r = this.answer(lines, this.calls.length);
    if (r.kind === 'ok') this.stored.push(...lines);
    return r;
  }
}

const src = { topic: 'sensors/1/1/r/t', clientId: 'c', payload: '1' };
/** a batch of these lines, every one from the record at offset 0 (whose message is src) */
const points = (lines: string[]): LineBatch => {
  const batch = new LineBatch(lines.length);
  for (const line of lines) batch.add(line, Date.now(), 0);
  return batch;
};

function setup(sink: FakeSink) {
  const dead: DeadLetterRecord[] = [];
  const metrics = new Metrics();
  const writer = new BatchWriter({
    sink,
    retry: fullJitterBackoff(1, 5),
    metrics,
    log: pino({ level: 'silent' }),
    deadLetter: async (r) => {
      dead.push(r);
    },
    sourceOf: async () => src,
  });
  return { writer, dead, metrics };
}

describe('status classification (Telegraf table)', () => {
  it.each([
    [204, 'ok'],
    [400, 'reject'],
    [422, 'reject'],
    [404, 'reject'],
    [413, 'too_large'],
    [401, 'retry'],
    [403, 'retry'],
    [429, 'retry'],
    [500, 'retry'],
    [503, 'retry'],
  ])('%d → %s', (status, kind) => {
    expect(classifyStatus(status, 'x', null).kind).toBe(kind);
  });
  it('Retry-After in seconds or as a date', () => {
    expect(parseRetryAfter('7')).toBe(7000);
    expect(parseRetryAfter(new Date(10_000).toUTCString(), 4000)).toBe(6000);
    expect(parseRetryAfter('soon')).toBeUndefined();
  });
});

describe('retry policy', () => {
  it('full jitter stays within the growing ceiling and honours Retry-After', () => {
    const p = fullJitterBackoff(1000, 60_000, () => 0.999);
    expect(p.delayMs(1)).toBeLessThan(1000);
    expect(p.delayMs(3)).toBeLessThan(4000);
    expect(p.delayMs(3)).toBeGreaterThan(3900);
    expect(p.delayMs(20)).toBeLessThanOrEqual(60_000);
    const low = fullJitterBackoff(1000, 60_000, () => 0);
    expect(low.delayMs(1)).toBe(0);
    expect(low.delayMs(1, 5000)).toBe(5000);
    expect(low.delayMs(1, 600_000)).toBe(60_000);
  });
});

describe('batch write transaction', () => {
  it('writes a good batch once', async () => {
    const sink = new FakeSink(() => ({ kind: 'ok' }));
    const { writer, metrics } = setup(sink);
    await writer.deliver(points(['a', 'b', 'c']));
    expect(sink.calls).toEqual([3]);
    expect(metrics.pointsWritten.get()).toBe(3);
  });

  it('retries transient failures with the whole batch until it is written', async () => {
    const sink = new FakeSink((_l, call) =>
      call < 4 ? { kind: 'retry', status: 503, message: 'down' } : { kind: 'ok' },
    );
    const { writer } = setup(sink);
    await writer.deliver(points(['a', 'b']));
    expect(sink.calls).toEqual([2, 2, 2, 2]);
    expect(sink.stored).toEqual(['a', 'b']);
  });

  it('splits on 413 until the halves fit', async () => {
    const sink = new FakeSink((lines) =>
      lines.length > 2 ? { kind: 'too_large', message: 'big' } : { kind: 'ok' },
    );
    const { writer, dead } = setup(sink);
    await writer.deliver(points(['1', '2', '3', '4', '5', '6', '7']));
    expect(sink.stored.sort()).toEqual(['1', '2', '3', '4', '5', '6', '7']);
    expect(dead).toEqual([]);
  });

  it('bisects a rejected batch so only the bad lines are dead-lettered', async () => {
    const bad = new Set(['l3', 'l11']);
    const sink = new FakeSink((lines) =>
      lines.some((l) => bad.has(l))
        ? { kind: 'reject', status: 400, message: 'field type conflict' }
        : { kind: 'ok' },
    );
    const { writer, dead, metrics } = setup(sink);
    const all = Array.from({ length: 16 }, (_, i) => `l${i}`);
    await writer.deliver(points(all));
    expect(sink.stored.sort()).toEqual(all.filter((l) => !bad.has(l)).sort());
    expect(dead.map((d) => d.reason)).toEqual(['sink_rejected', 'sink_rejected']);
    expect(dead[0]?.detail).toContain('400');
    // each with the message it came from (read back by its record's offset), not the line
    expect(dead.map((d) => [d.topic, d.clientId, d.payload])).toEqual([
      [src.topic, src.clientId, src.payload],
      [src.topic, src.clientId, src.payload],
    ]);
    expect(metrics.messagesRejected.get({ reason: 'sink_rejected' })).toBe(2);
  });
});

describe('sink write retries: 1 s to 30 s, and a probe that resumes at once', () => {
  it('the sinkWrite policy waits between 1 s and 30 s, growing, with jitter', () => {
    const hi = retryPolicy('sinkWrite', () => 0.999_999);
    const lo = retryPolicy('sinkWrite', () => 0);
    expect(lo.delayMs(1)).toBe(1000);
    expect(hi.delayMs(1)).toBe(1000);
    expect(lo.delayMs(3)).toBe(2000);
    expect(hi.delayMs(3)).toBeCloseTo(4000, -1);
    for (let a = 1; a < 40; a++) {
      expect(lo.delayMs(a)).toBeGreaterThanOrEqual(1000);
      expect(hi.delayMs(a)).toBeLessThanOrEqual(30_000);
    }
    expect(lo.delayMs(30)).toBe(15_000);
    expect(lo.delayMs(1, 600_000)).toBe(30_000); // Retry-After never beyond the ceiling
  });

  it('a sleeping retry is woken when the sink answers a ping again after not answering', async () => {
    let up = false;
    const sink = new FakeSink(() =>
      up ? { kind: 'ok' } : { kind: 'retry', message: 'network: fetch failed' },
    );
    let pings = 0;
    sink.ping = async () => {
      pings++;
      if (!up) throw new Error('connect ECONNREFUSED');
    };
    const metrics = new Metrics();
    const writer = new BatchWriter({
      sink,
      // a retry sleeps 60 s: only the probe can bring the write back within the test
      retry: { delayMs: () => 60_000 },
      probeIntervalMs: 50,
      metrics,
      log: pino({ level: 'silent' }),
      deadLetter: async () => {},
      sourceOf: async () => src,
    });
    const t0 = Date.now();
    const done = writer.deliver(points(['a']));
    await new Promise((r) => setTimeout(r, 200));
    expect(pings).toBeGreaterThan(0);
    up = true;
    await done;
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(sink.stored).toEqual(['a']);
    expect(metrics.sinkProbes.get({ result: 'failed' })).toBeGreaterThan(0);
    expect(metrics.sinkProbes.get({ result: 'ok' })).toBe(1);
  });

  it('a server that answers pings but refuses writes (503) keeps its backoff: the probe does not wake it', async () => {
    let calls = 0;
    const sink = new FakeSink(() => {
      calls++;
      return { kind: 'retry', status: 503, message: 'unavailable' };
    });
    const writer = new BatchWriter({
      sink,
      retry: { delayMs: () => 60_000 },
      probeIntervalMs: 20,
      metrics: new Metrics(),
      log: pino({ level: 'silent' }),
      deadLetter: async () => {},
      sourceOf: async () => src,
    });
    const done = writer.deliver(points(['a'])).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 300));
    expect(calls).toBe(1);
    writer.abort();
    expect(await done).toBeInstanceOf(Error);
  });
});

describe('network errors name their cause', () => {
  it('"fetch failed" carries the code undici hides in cause (EMFILE: out of descriptors)', () => {
    const err = new TypeError('fetch failed', { cause: Object.assign(new Error('x'), { code: 'EMFILE' }) });
    expect(networkMessage(err)).toBe('network: fetch failed (EMFILE)');
    expect(networkMessage(new Error('socket hang up'))).toBe('network: socket hang up');
  });
});
