import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Metrics } from '../metrics.js';

/*
 * Admission control (contract section 7: memory bounded whatever the offered
 * load; a QoS 0 flood is met by reading publishers' sockets more slowly).
 *
 * Aedes reads a client's socket again only once every publish of the previous
 * read has been authorized (client.js, _parsingBatch/nextBatch), so holding the
 * authorizePublish callback is TCP backpressure: the unread bytes stay in the
 * socket's 16 KiB stream buffer, then in the kernel, then in the publisher.
 * Nothing accepted is held here; a held publisher costs one pending callback.
 *
 * Without this, a QoS 0 flood was read as fast as libuv delivers it (up to 32
 * reads of 64 KiB per socket per poll), parsed and appended synchronously: the
 * log's write buffer grew by hundreds of MB between two event-loop turns, the
 * writer's responses and /health waited tens of seconds, and InfluxDB writes
 * timed out. The gates:
 * - pace (every publish): a publish arriving after TURN_MS of ingestion in the current
 *   event-loop turn is acknowledged at the next turn (setImmediate), so I/O
 *   callbacks (sink responses, log writes, HTTP) run in between;
 * - QoS 0 only (QoS 1/2 are held by their acknowledgement already):
 * - log_buffer: appended but not yet written log bytes over maxLogBufferBytes
 *   → wait for the next write of the log;
 * - memory: the heap passed twice HeapGuard's threshold (below) → wait until
 *   the collector has caught up;
 * - sink_behind: while the sink is writing (not in an outage), as many
 *   batches waiting in the pipeline as being written, or more than maxUnsentBytes of
 *   log not yet written to the sink → wait until the writer makes progress. So
 *   the input is admitted at the rate the sink takes it. During an outage the
 *   log absorbs the input (up to pipeline.maxLogBytes, then QoS 0 is dropped
 *   and counted): that is what the log is for.
 *
 * Held publishers are let go one socket read at a time (a "wave": the publishes
 * gated in one synchronous run, i.e. the rest of one client's parsed read),
 * oldest first, re-checking the gates after each; while waves wait, new
 * arrivals queue behind them (round robin). Releasing every held publisher at
 * once let each of them parse a whole read (up to ~80 KB, ~600 readings) past
 * a gate that had just opened: 50 flood connections put 30,000 readings, six
 * batches, into the pipeline each time, and the flood's peak RSS was mostly
 * those points (issue 15).
 */

/**
 * Callbacks held per held read. Aedes reads a client's socket again when its
 * count of unfinished publishes falls to 0, and a 'readable' event of the
 * socket counts as one finished (aedes/lib/client.js, nextBatch): with one
 * held, the next 'readable' let the client read on (a QoS 0 flood ran away in
 * tests/e2e/flood.test.ts); with two, it waits. Node emits 'readable' once
 * until the stream is read again.
 */
const HELD = 2;

/** Add `go` to a run's tail; the one it pushes out of the last HELD goes now (in order). */
function keepLast(tail: Array<(err: null) => void>, go: (err: null) => void): void {
  tail.push(go);
  if (tail.length > HELD) tail.shift()!(null);
}

/** Longest run of synchronous ingestion per event-loop turn. */
const TURN_MS = 10;
/** Longest a held publisher waits before the gates are looked at again (a state change nobody signals). */
const RECHECK_MS = 50;
/** Forced full collections at most this often (each costs tens of ms of CPU with ~100 MB live). */
const MIN_GC_INTERVAL_MS = 500;

export interface AdmissionLog {
  /** bytes appended and not yet written to the file */
  readonly buffered: number;
  readonly written: number;
  waitWritten(offset: number): Promise<void>;
}

export interface AdmissionPipeline {
  /** true while the sink is failing (outage): the log absorbs the input then */
  readonly sinkFailing: boolean;
  /** as many batches wait as are being written */
  readonly pressed: boolean;
  /** bytes of the log not yet written to the sink */
  readonly bytesBehind: number;
  /** resolves when the next batch finishes */
  progress(): Promise<void>;
}

export interface AdmissionOptions {
  readonly maxLogBufferBytes: number;
  readonly maxUnsentBytes: number;
}

type Reason = 'log_buffer' | 'sink_behind' | 'memory';

/** Publishes held together (one socket read's worth), released together. */
interface Wave {
  readonly held: Promise<void>;
  readonly release: () => void;
  /** hold(): the wave's last HELD callbacks, the only ones that wait (null: none yet) */
  tail: Array<(err: null) => void> | null;
}

export class Admission {
  /** ingestion time in this turn (ms) */
  private spent = 0;
  private turnOpen = false;
  /** Aedes's callbacks of publishes paced to the next turn (called with null: no error) */
  private deferred: Array<(err: null) => void> = [];
  /** the last over-budget callbacks of the current synchronous run (keepLast) */
  private readonly runTail: Array<(err: null) => void> = [];
  /** held publishes, oldest first: one promise per socket read, not per publish (a flood holds tens of thousands) */
  private readonly waves: Wave[] = [];
  /** the wave publishes gated in the current synchronous run join */
  private open: Wave | null = null;
  private pumping = false;
  private holding: Reason = 'sink_behind';
  private wake: Promise<void> | null = null;
  /** counted here and added to the metric once per turn: inc() with labels is too dear per message */
  private readonly counts = { log_buffer: 0, sink_behind: 0, memory: 0, event_loop: 0 };

  constructor(
    private readonly log: AdmissionLog,
    private readonly pipeline: AdmissionPipeline,
    private readonly metrics: Metrics,
    private readonly opts: AdmissionOptions,
    private readonly heap?: { readonly pressed: boolean },
  ) {}

  private reason(): Reason | undefined {
    if (this.log.buffered >= this.opts.maxLogBufferBytes) return 'log_buffer';
    if (this.heap?.pressed) return 'memory';
    const p = this.pipeline;
    if (!p.sinkFailing && (p.pressed || p.bytesBehind >= this.opts.maxUnsentBytes)) return 'sink_behind';
    return undefined;
  }

  /** undefined: read on; otherwise the publisher's next packets wait for this promise. */
  gate(): Promise<void> | undefined {
    // while publishers are held, later ones queue behind them (fair, and the gates are re-checked per wave)
    const reason = this.reason() ?? (this.waves.length ? this.holding : undefined);
    if (!reason) return undefined;
    this.holding = reason;
    this.counts[reason]++;
    this.openTurn();
    if (!this.open) {
      let release!: () => void;
      const held = new Promise<void>((resolve) => {
        release = resolve;
      });
      const wave: Wave = { held, release, tail: null };
      this.open = wave;
      this.waves.push(wave);
      // the rest of this client's read is parsed synchronously: it ends at the next microtask
      queueMicrotask(() => {
        if (this.open === wave) this.open = null;
      });
    }
    if (!this.pumping) {
      this.pumping = true;
      void this.pump().finally(() => {
        this.pumping = false;
      });
    }
    return this.open.held;
  }

  /**
   * gate() for a recorded QoS 0 publish whose only wait would be the gate:
   * `go` now (paced), or held among its wave's last HELD callbacks. Only those
   * of a wave (one client's parsed read) have to wait for Aedes not to read
   * that client again; the earlier ones go as later ones arrive (in order),
   * so a held read keeps two packets alive, not hundreds, and costs one
   * promise reaction per wave instead of one per publish (issue 15: each held
   * publish kept its packet and closures alive, and the collector promoted them).
   */
  hold(go: (err: null) => void, costMs: number): void {
    this.charge(costMs);
    const held = this.gate();
    if (!held) {
      this.pace(go, 0);
      return;
    }
    const wave = this.open!;
    if (wave.tail === null) {
      const tail: Array<(err: null) => void> = [];
      wave.tail = tail;
      void held.then(() => {
        for (const cb of tail.splice(0)) this.pace(cb, 0);
      });
    }
    keepLast(wave.tail, go);
  }

  /** Lets the held waves go one by one while every gate is open. */
  private async pump(): Promise<void> {
    while (this.waves.length) {
      const r = this.reason();
      if (r) {
        await (r === 'log_buffer' ? this.log.waitWritten(this.log.written) : this.nextWake());
        continue;
      }
      this.openTurn();
      if (this.spent >= TURN_MS) {
        // this turn's ingestion time is spent (pace() defers the callbacks too): go on at the next
        await new Promise<void>((resolve) => setImmediate(resolve));
        continue;
      }
      const wave = this.waves.shift()!;
      if (this.open === wave) this.open = null;
      wave.release();
      // the wave's callbacks were queued first: by the time this resumes, the client whose
      // read they completed has parsed its next read (Aedes reads on the last callback)
      await wave.held;
    }
  }

  /** The writer's next progress, or a short timer (the sink may start failing: nobody signals that). */
  private nextWake(): Promise<void> {
    this.wake ??= new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, RECHECK_MS);
      void this.pipeline.progress().then(() => {
        clearTimeout(timer);
        resolve();
      });
    }).finally(() => {
      this.wake = null;
    });
    return this.wake;
  }

  /**
   * Calls `go` now, or at the next event-loop turn once this turn's ingestion
   * time is spent. `costMs`: the time this publish took in the ingress.
   *
   * Ingestion time, not the time since the turn began (issue 15): a turn's
   * wall time also holds other clients' reads, sink responses, log writes and
   * garbage collection, and at 20,000 readings/s in bursts turns lasted 80-150
   * ms, so three publishes in four were deferred without any overload. Each
   * deferred callback keeps Aedes's packet and its closures alive across a
   * young-generation collection: 90 MB promoted in 12 s instead of 31, minor GC
   * 1.06 s instead of 0.12 (--trace-gc-nvp, bench/README.md).
   */
  pace(go: (err: null) => void, costMs: number): void {
    this.openTurn();
    this.spent += costMs;
    if (this.spent < TURN_MS) {
      go(null);
      return;
    }
    // Over budget: only the last callbacks of this synchronous run (one client's parsed read)
    // are deferred; holding them is enough for Aedes not to read that client again this turn.
    // The publishes before them are parsed already: holding those too only kept their packets
    // alive. In order: the earlier ones complete as later ones arrive.
    if (this.runTail.length === 0) queueMicrotask(this.endRun);
    keepLast(this.runTail, go);
  }

  /** Ingestion time spent now by a publish whose callback is paced later (pace(cb, 0)). */
  charge(costMs: number): void {
    this.openTurn();
    this.spent += costMs;
  }

  /** the callbacks held at the end of a run wait for the next turn */
  private readonly endRun = (): void => {
    if (this.runTail.length === 0) return;
    this.counts.event_loop++;
    for (const cb of this.runTail.splice(0)) this.deferred.push(cb);
  };

  private openTurn(): void {
    if (this.turnOpen) return;
    this.turnOpen = true;
    this.spent = 0;
    setImmediate(this.nextTurn);
  }

  private readonly nextTurn = (): void => {
    this.turnOpen = false;
    const c = this.counts;
    for (const reason of ['log_buffer', 'sink_behind', 'memory', 'event_loop'] as const) {
      if (c[reason] === 0) continue;
      this.metrics.admissionWaits.inc({ reason }, c[reason]);
      c[reason] = 0;
    }
    const deferred = this.deferred;
    this.deferred = [];
    // each resumed client reads and parses its next chunk right here, counted in a new turn;
    // each run ends when its go returns (no microtask in between here)
    for (const go of deferred) {
      go(null);
      this.endRun();
    }
  };
}

/**
 * V8 sizes its old generation lazily: on a machine with a few GB it runs its
 * first full collection only when about half a gigabyte is in use, however
 * little of it is live. Under a flood most of that is garbage (points that
 * lived for one batch, then were written), so RSS rose to 600-700 MB with
 * under 100 MB live (heap snapshot). This asks for a full collection,
 * incremental and concurrent (`execution: 'async'`), whenever the heap in use
 * passes `heapBytes` (or half as much again as the least heap in use over the
 * last 20 s, about what is live), at most twice a second. `gc` is reached
 * through --expose-gc set at run time and a fresh context: the launcher cannot
 * pass V8 flags (`--max-old-space-size`) to its own process.
 */
export class HeapGuard {
  private readonly timer: NodeJS.Timeout;
  /** heap in use, sampled every 100 ms over the last 20 s: its minimum is about what is live */
  private readonly samples = new Float64Array(200);
  private sampled = 0;
  private lastGc = 0;
  private collecting = false;
  private threshold: number;
  collections = 0;
  /**
   * The heap passed twice the threshold: garbage is made faster than the
   * collector (concurrent, on a busy machine) frees it. Admission holds QoS 0
   * publishers until it has caught up.
   */
  pressed = false;

  constructor(
    private readonly heapBytes: number,
    private readonly gc: ((opts: { type: 'major'; execution: 'async' }) => unknown) | null = exposeGc(),
  ) {
    this.threshold = heapBytes;
    this.timer = setInterval(() => this.check(), 100);
    this.timer.unref();
  }

  private check(): void {
    if (!this.gc) return;
    // not process.memoryUsage(): it reads /proc/self and throws EMFILE when descriptors run out
    const used = getHeapStatistics().used_heap_size;
    this.samples[this.sampled++ % this.samples.length] = used;
    let live = used;
    for (let i = Math.min(this.sampled, this.samples.length) - 1; i >= 0; i--)
      live = Math.min(live, this.samples[i]!);
    // when more than the budget is live (many connections, say), collecting twice a second would
    // only cost CPU and holding publishers would not help: the threshold follows what is live
    this.threshold = Math.max(this.heapBytes, live * 1.5);
    this.pressed = used >= this.threshold * 2;
    const now = performance.now();
    if (this.collecting || now - this.lastGc < MIN_GC_INTERVAL_MS || used < this.threshold) return;
    this.lastGc = now;
    this.collections++;
    this.collecting = true;
    Promise.resolve(this.gc({ type: 'major', execution: 'async' })).then(
      () => {
        this.collecting = false;
      },
      () => {
        this.collecting = false;
      },
    );
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

function exposeGc(): ((opts: { type: 'major'; execution: 'async' }) => unknown) | null {
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as unknown;
    return typeof gc === 'function' ? (gc as (opts: { type: 'major'; execution: 'async' }) => unknown) : null;
  } catch {
    return null;
  }
}
