import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BatchPool, LineBatch } from '../../src/pipeline/batch.js';

// Issue 15: a batch is its body (lines encoded once, "\n" between them) plus
// typed arrays; every view the writer takes (whole, halves when bisecting)
// must be exactly the lines it names.

describe('LineBatch', () => {
  it('any lines (multi-byte, long, many): body and every slice equal the joined lines', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.string({ unit: 'binary', maxLength: 300 }).map((s) => s.replace(/\n/g, ' ')),
          {
            minLength: 1,
            maxLength: 2500,
          },
        ),
        fc.nat(),
        fc.nat(),
        (lines, x, y) => {
          const b = new LineBatch(16);
          for (let i = 0; i < lines.length; i++) b.add(lines[i]!, 1000 + i, 10 * i);
          expect(b.count).toBe(lines.length);
          expect(b.body().toString('utf8')).toBe(lines.join('\n'));
          const from = x % lines.length;
          const to = from + 1 + (y % (lines.length - from));
          expect(b.body(from, to).toString('utf8')).toBe(lines.slice(from, to).join('\n'));
          expect(b.line(from)).toBe(lines[from]);
          expect(b.receivedAt(to - 1)).toBe(1000 + to - 1);
          expect(b.record(from)).toBe(10 * from);
        },
      ),
      { numRuns: 60 },
    );
  });
  it('an empty line and a 3-byte-per-unit line at the buffer boundary', () => {
    const b = new LineBatch(1);
    const big = '€'.repeat(10_000);
    for (const l of ['', big, 'x', '']) b.add(l, 1, 0);
    expect(b.body().toString('utf8')).toBe(['', big, 'x', ''].join('\n'));
    expect(b.line(1)).toBe(big);
  });
});

it('a released batch holds no body (a written batch waiting for an earlier one to commit)', () => {
  const b = new LineBatch(100);
  for (let i = 0; i < 100; i++) b.add(`line ${i} ${'x'.repeat(100)}`, i, i);
  expect(b.bytes).toBeGreaterThan(10_000);
  b.end = 42;
  b.done = true;
  b.release();
  expect(b.bytes).toBe(0);
  expect(b.body().length).toBe(0);
  // what the pipeline still reads of it
  expect([b.count, b.end, b.done]).toEqual([100, 42, true]);
});

it('a released batch gives its storage to the next one; a live batch never shares it (issue 15)', () => {
  const pool = new BatchPool(2);
  const a = new LineBatch(100, 16_384, pool);
  const b = new LineBatch(100, 16_384, pool);
  for (let i = 0; i < 100; i++) {
    a.add(`a ${i} ${'x'.repeat(100)}`, i, i);
    b.add(`b ${i} ${'y'.repeat(100)}`, i, i);
  }
  const aBody = a.body();
  a.release();
  // the next batch writes into a's old bytes; b, still live, is untouched
  const c = new LineBatch(100, 16_384, pool);
  const src = Buffer.from(`c 0 ${'z'.repeat(100)}`);
  c.addBytes(src, 0, src.length, 1, 1);
  expect(aBody.buffer).toBe(c.body().buffer);
  expect(c.line(0)).toBe(src.toString());
  expect(b.line(99)).toBe(`b 99 ${'y'.repeat(100)}`);
  expect(b.body().buffer).not.toBe(c.body().buffer);
  // too small for what is asked: a new one
  const big = new LineBatch(10_000, 2_000_000, pool);
  expect(big.body(0, 0).buffer).not.toBe(b.body().buffer);
  // at most `max` kept
  for (const x of [b, c, big]) x.release();
  const d = new LineBatch(16, 4096, pool);
  const e = new LineBatch(16, 4096, pool);
  const f = new LineBatch(16, 4096, pool);
  const buffers = new Set(
    [d, e, f].map((x) => x.bytes === 0 && (x as unknown as { buf: Buffer }).buf.buffer),
  );
  expect(buffers.size).toBe(3);
});
