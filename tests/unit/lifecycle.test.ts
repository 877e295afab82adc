import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { type Component, Lifecycle } from '../../src/component.js';
import { Metrics } from '../../src/metrics.js';
import { Outage, RETRY_POLICIES, retryPolicy, Sleeps } from '../../src/retry.js';
import { Scheduler } from '../../src/scheduler.js';

const silent = pino({ level: 'silent' });

describe('lifecycle (issue 13.1)', () => {
  it('starts in order, stops in reverse, only what started, and a failing stop does not stop the others', async () => {
    const events: string[] = [];
    const part = (name: string, opts: { failStart?: boolean; failStop?: boolean } = {}): Component => ({
      name,
      start() {
        if (opts.failStart) throw new Error(`${name} cannot start`);
        events.push(`start ${name}`);
      },
      stop() {
        events.push(`stop ${name}`);
        if (opts.failStop) throw new Error(`${name} cannot stop`);
      },
    });
    const ok = new Lifecycle(
      [part('log'), part('sink', { failStop: true }), part('broker')],
      new Metrics(),
      silent,
    );
    await ok.start();
    await ok.stop(Date.now() + 1000);
    expect(events).toEqual([
      'start log',
      'start sink',
      'start broker',
      'stop broker',
      'stop sink',
      'stop log',
    ]);
    events.length = 0;
    const failing = new Lifecycle(
      [part('log'), part('sink', { failStart: true }), part('broker')],
      new Metrics(),
      silent,
    );
    await expect(failing.start()).rejects.toThrow('sink cannot start');
    await failing.stop(Date.now() + 1000);
    expect(events).toEqual(['start log', 'stop log']);
  });
});

describe('retry module (issue 13.4)', () => {
  it('every named policy stays within its bounds', () => {
    for (const name of Object.keys(RETRY_POLICIES) as (keyof typeof RETRY_POLICIES)[]) {
      const { minMs, maxMs, jitter } = RETRY_POLICIES[name];
      for (const r of [0, 0.5, 0.999]) {
        const p = retryPolicy(name, () => r);
        for (let attempt = 1; attempt < 20; attempt++) {
          const d = p.delayMs(attempt);
          expect(d).toBeLessThanOrEqual(maxMs);
          expect(d).toBeGreaterThanOrEqual(jitter === 'full' ? 0 : minMs);
        }
      }
    }
  });

  it('sleeps wake early: only the wakeable ones, or all of them', async () => {
    const sleeps = new Sleeps();
    const order: string[] = [];
    const a = sleeps.sleep(60_000, true).then(() => order.push('wakeable'));
    const b = sleeps.sleep(60_000, false).then(() => order.push('fixed'));
    expect(sleeps.waiting).toBe(true);
    expect(sleeps.wake()).toBe(1);
    await a;
    expect(sleeps.waiting).toBe(false);
    expect(sleeps.wake(true)).toBe(1);
    await b;
    expect(order).toEqual(['wakeable', 'fixed']);
  });

  it('an outage logs its start once and its recovery once', () => {
    const lines: Array<{ level: string; msg: string }> = [];
    const log = {
      warn: (_o: unknown, msg: string) => lines.push({ level: 'warn', msg }),
      info: (_o: unknown, msg: string) => lines.push({ level: 'info', msg }),
    } as never;
    let now = 1000;
    const o = new Outage(log, 'Redis alert delivery', () => now);
    expect(o.fail(new Error('ECONNREFUSED'))).toBe(1);
    expect(o.fail(new Error('ECONNREFUSED'))).toBe(2);
    expect(o.failing).toBe(true);
    expect(o.lastError).toBe('ECONNREFUSED');
    now = 5000;
    o.ok();
    o.ok();
    expect(lines).toEqual([
      { level: 'warn', msg: 'Redis alert delivery failing; retrying' },
      { level: 'info', msg: 'Redis alert delivery recovered' },
    ]);
    expect(o.since).toBeNull();
  });
});

describe('scheduler (issue 13.4)', () => {
  it('lists every job, counts runs and failures, never overlaps a job, and stops them', async () => {
    const s = new Scheduler(silent);
    let release: () => void = () => {};
    let runs = 0;
    s.every('slow', 60_000, () => {
      runs++;
      return new Promise<void>((r) => {
        release = r;
      });
    });
    s.every('broken', 60_000, () => {
      throw new Error('boom');
    });
    const first = s.runNow('slow');
    await s.runNow('slow'); // still running: skipped
    release();
    await first;
    await s.runNow('broken');
    const jobs = Object.fromEntries(s.list().map((j) => [j.name, j]));
    expect(runs).toBe(1);
    expect(jobs.slow).toMatchObject({ schedule: 'every 60000 ms', runs: 1, skipped: 1, failures: 0 });
    expect(jobs.broken).toMatchObject({ runs: 1, failures: 1, last_error: 'boom' });
    s.stop();
    expect(s.list()).toEqual([]);
  });
});
