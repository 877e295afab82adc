import { describe, expect, it } from 'vitest';
import { Admission } from '../../src/broker/admission.js';
import { Metrics } from '../../src/metrics.js';

// Admission control (issue 11, item 3): which publishers are held, and that they are let go.

function fixture() {
  const writes: Array<() => void> = [];
  const progress: Array<() => void> = [];
  const log = {
    buffered: 0,
    written: 0,
    waitWritten: () => new Promise<void>((resolve) => writes.push(resolve)),
  };
  const pipeline = {
    sinkFailing: false,
    pressed: false,
    bytesBehind: 0,
    progress: () => new Promise<void>((resolve) => progress.push(resolve)),
  };
  const heap = { pressed: false };
  const metrics = new Metrics();
  const admission = new Admission(
    log,
    pipeline,
    metrics,
    { maxLogBufferBytes: 1000, maxUnsentBytes: 10_000 },
    heap,
  );
  return { log, pipeline, heap, metrics, admission, writes, progress };
}

const flushTurn = () => new Promise((r) => setImmediate(r));

describe('admission control', () => {
  it('lets publishers on while nothing is behind', () => {
    const f = fixture();
    expect(f.admission.gate()).toBeUndefined();
  });

  it('holds publishers while the log write buffer is over its limit, until a write brings it under', async () => {
    const f = fixture();
    f.log.buffered = 2000;
    let released = 0;
    void f.admission.gate()!.then(() => released++);
    void f.admission.gate()!.then(() => released++);
    await flushTurn();
    expect(released).toBe(0);
    expect(f.writes.length).toBe(1); // one shared wait, not one per publish
    f.log.buffered = 0;
    f.writes.shift()!();
    await flushTurn();
    expect(released).toBe(2);
    await flushTurn();
    expect(f.metrics.admissionWaits.get({ reason: 'log_buffer' })).toBe(2);
  });

  it('hold(): only the last two publishes of a held read wait, the earlier ones go in order (issue 15)', async () => {
    const f = fixture();
    const order: string[] = [];
    // nothing behind: every one goes now
    f.admission.hold(() => order.push('free'), 0.01);
    expect(order).toEqual(['free']);
    f.log.buffered = 2000;
    // one client's parsed read: each goes when the next arrives, the last one waits
    for (let i = 0; i < 4; i++) f.admission.hold(() => order.push(`a${i}`), 0.01);
    expect(order).toEqual(['free', 'a0', 'a1']);
    await Promise.resolve(); // the read ends
    // another client's read: its own wave, behind the first
    for (let i = 0; i < 3; i++) f.admission.hold(() => order.push(`b${i}`), 0.01);
    await flushTurn();
    expect(order).toEqual(['free', 'a0', 'a1', 'b0']);
    f.log.buffered = 0;
    f.writes.shift()!();
    for (let i = 0; i < 5 && order.length < 8; i++) await flushTurn();
    expect(order).toEqual(['free', 'a0', 'a1', 'b0', 'a2', 'a3', 'b1', 'b2']);
  });

  it('holds while a working sink is behind, not during an outage (the log absorbs it then)', async () => {
    const f = fixture();
    f.pipeline.bytesBehind = 20_000;
    const held = f.admission.gate();
    expect(held).toBeDefined();
    let released = false;
    void held!.then(() => {
      released = true;
    });
    f.pipeline.bytesBehind = 0;
    f.progress.shift()!();
    await held;
    expect(released).toBe(true);

    f.pipeline.pressed = true;
    f.pipeline.sinkFailing = true;
    expect(f.admission.gate()).toBeUndefined();
  });

  it('lets held publishers go one read at a time, so a flood of them overshoots by one read, not by all of them', async () => {
    // issue 15: 50 flood connections released together each parsed a full socket read (~600
    // readings): 30,000 readings past the sink_behind gate each time it opened
    const f = fixture();
    f.pipeline.bytesBehind = 20_000;
    const released: number[] = [];
    const again: Array<Promise<void> | undefined> = [];
    // three publishers held, each from its own socket read (a separate callback)
    for (const id of [1, 2, 3]) {
      const held = f.admission.gate();
      expect(held).toBeDefined();
      void held!.then(() => {
        released.push(id);
        // the released publisher's next read fills the pipeline again: its first reading is
        // recorded, then asks the gate
        f.pipeline.bytesBehind = 20_000;
        again.push(f.admission.gate());
      });
      await Promise.resolve();
    }
    f.pipeline.bytesBehind = 0;
    f.progress.shift()!();
    await flushTurn();
    expect(released).toEqual([1]);
    expect(again[0]).toBeDefined();
    // room again: the next in line goes, then the one released first (round robin)
    f.pipeline.bytesBehind = 0;
    f.progress.shift()!();
    await flushTurn();
    expect(released).toEqual([1, 2]);
    f.pipeline.bytesBehind = 0;
    f.progress.shift()!();
    await flushTurn();
    expect(released).toEqual([1, 2, 3]);
  });

  it('holds while the heap is under pressure', async () => {
    const f = fixture();
    f.heap.pressed = true;
    const held = f.admission.gate();
    expect(held).toBeDefined();
    f.heap.pressed = false;
    await held; // re-checked on a short timer
  });

  it('defers callbacks to the next event-loop turn once 10 ms of ingestion ran in this one', async () => {
    const f = fixture();
    let now = 0;
    let later = 0;
    const order: number[] = [];
    // 9.9 ms of ingestion: every callback now
    for (let i = 0; i < 99; i++) f.admission.pace(() => now++, 0.1);
    expect(now).toBe(99);
    // over budget in one synchronous run (one client's parsed read): each callback completes when
    // the next but one arrives, in order, and only the run's last two wait for the next turn (they
    // keep Aedes from reading that client again); the others' packets are parsed already
    for (let i = 0; i < 4; i++) f.admission.pace(() => order.push(i), 0.1);
    expect(order).toEqual([0, 1]);
    await Promise.resolve(); // the run ends
    expect(order).toEqual([0, 1]);
    expect(later).toBe(0);
    // another client's run in the same turn: its last one waits too
    f.admission.pace(() => later++, 0.1);
    await flushTurn();
    expect(order).toEqual([0, 1, 2, 3]);
    expect(later).toBe(1);
    // a new turn: a new budget
    f.admission.pace(() => now++, 0.1);
    expect(now).toBe(100);
  });

  it('counts ingestion time, not the wall time of the turn (issue 15: bursts deferred three publishes in four)', async () => {
    const f = fixture();
    let now = 0;
    const t0 = performance.now();
    // a long turn (other clients, sink responses, GC) in which ingestion itself took little
    while (performance.now() - t0 < 25) f.admission.pace(() => now++, 0);
    const calls = now;
    f.admission.pace(() => now++, 0.1);
    expect(now).toBe(calls + 1);
    await flushTurn();
  });
});
