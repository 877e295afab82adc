import { describe, expect, it } from 'vitest';
import { DrainProgress } from '../../src/pipeline/drainProgress.js';

function capture() {
  const lines: Array<{ obj: Record<string, unknown>; msg: string }> = [];
  const log = { info: (obj: Record<string, unknown>, msg: string) => lines.push({ obj, msg }) };
  return { lines, log: log as never };
}

describe('backlog drain progress', () => {
  it('reports rate and time left while draining, then once when done; silent while failing or keeping up', () => {
    const src = { bytesBehind: 100 * 1048576, pointsWritten: 0, failing: true };
    const { lines, log } = capture();
    const p = new DrainProgress(src, log);
    p.sample(0);
    p.sample(5000); // still failing: the writer reports outages
    src.failing = false;
    src.bytesBehind = 80 * 1048576;
    src.pointsWritten = 50_000;
    p.sample(10_000);
    expect(lines).toEqual([
      { obj: { behindMiB: 80, pointsPerS: 10_000, etaS: 20 }, msg: 'draining backlog' },
    ]);
    src.bytesBehind = 1024;
    src.pointsWritten = 250_000;
    p.sample(30_000);
    expect(lines[1]).toEqual({ obj: { durationS: 25, points: 250_000 }, msg: 'backlog drained' });
    src.pointsWritten = 260_000;
    p.sample(35_000);
    expect(lines).toHaveLength(2);
  });
});
