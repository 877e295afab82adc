import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ReloadScheduler } from '../../src/metadata/reloadScheduler.js';

describe('ReloadScheduler (issue 18 items 8 and 4)', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('a burst of requests makes one reload at once, one after the minimum interval, and no more', async () => {
    let starts: number[] = [];
    let finish: (() => void) | null = null;
    const s = new ReloadScheduler({
      minIntervalMs: 1000,
      retryMinMs: 1000,
      retryMaxMs: 30_000,
      now: () => Date.now(),
      load: () => {
        starts.push(Date.now());
        return new Promise<void>((r) => {
          finish = r;
        });
      },
    });
    const t0 = Date.now();
    for (let i = 0; i < 1000; i++) s.request();
    await vi.advanceTimersByTimeAsync(50);
    expect(starts).toHaveLength(1);
    // more requests while it runs: one pending, the rest coalesced
    for (let i = 0; i < 1000; i++) s.request();
    finish!();
    await vi.advanceTimersByTimeAsync(500);
    expect(starts).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(600);
    expect(starts).toHaveLength(2);
    expect(starts[1]! - starts[0]!).toBeGreaterThanOrEqual(1000);
    finish!();
    await vi.advanceTimersByTimeAsync(5000);
    expect(starts).toHaveLength(2);
    expect(s.reloads).toBe(2);
    expect(s.requests).toBe(2000);
    expect(s.coalesced).toBe(1998);
    expect(starts[0]! - t0).toBeLessThan(50);
    starts = [];
    await s.stop();
  });

  it('a failed reload is retried with doubling, jittered, capped backoff until it succeeds', async () => {
    let fail = 6;
    const starts: number[] = [];
    const delays: number[] = [];
    const s = new ReloadScheduler({
      minIntervalMs: 1000,
      retryMinMs: 1000,
      retryMaxMs: 8000,
      now: () => Date.now(),
      random: () => 1, // the top of the jitter band
      load: async () => {
        starts.push(Date.now());
        if (fail-- > 0) throw new Error('canceling statement due to lock timeout');
      },
      onFailure: (_e, ms) => delays.push(ms),
    });
    await expect(s.runNow()).rejects.toThrow(/lock timeout/);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(s.failures).toBe(6);
    expect(s.reloads).toBe(1);
    expect(starts).toHaveLength(7);
    expect(delays).toEqual([1250, 2500, 5000, 8000, 8000, 8000]);
    expect(s.retrying).toBe(false);
    await s.stop();
  });

  it('a fresh request (PostgreSQL back) cuts a long backoff short', async () => {
    let fail = true;
    let loads = 0;
    const s = new ReloadScheduler({
      minIntervalMs: 1000,
      retryMinMs: 30_000,
      retryMaxMs: 30_000,
      now: () => Date.now(),
      load: async () => {
        loads++;
        if (fail) throw new Error('connection refused');
      },
    });
    await expect(s.runNow()).rejects.toThrow();
    fail = false;
    s.request(); // joins the pending retry
    await vi.advanceTimersByTimeAsync(2000);
    expect(loads).toBe(1);
    s.request(true);
    await vi.advanceTimersByTimeAsync(100);
    expect(loads).toBe(2);
    expect(s.retrying).toBe(false);
    await s.stop();
  });
});
