import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LineBatch } from '../../src/pipeline/batch.js';

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
