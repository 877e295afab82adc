// When to reload the metadata snapshot (issue 18 items 8 and 4).
//
// Every row change is one statement-level NOTIFY: a burst of 10,000 UPDATEs
// used to make 133 back-to-back full reloads (92% CPU, PUBACK p99 ×10). A
// reload reads every table, so one reload after a burst sees every change of
// it: requests are coalesced into at most one reload in flight and one
// pending, and reloads start at least minIntervalMs apart.
//
// A failed reload (lock or statement timeout, full pool, PostgreSQL restart)
// used to wait for the next cron tick (minutes) while a disabled device stayed
// admitted: it is retried with exponential backoff and jitter until one succeeds.

export interface ReloadSchedulerOptions {
  /** reloads start at least this far apart (the first after a quiet spell starts at once) */
  readonly minIntervalMs: number;
  /** first retry delay after a failure; doubles per further failure */
  readonly retryMinMs: number;
  readonly retryMaxMs: number;
  /** one full reload; rejects when it failed */
  readonly load: () => Promise<void>;
  /** told about every failure and when the retry comes; must not throw */
  readonly onFailure?: (err: unknown, retryInMs: number) => void;
  readonly now?: () => number;
  readonly random?: () => number;
}

/** A short pause before a reload after a quiet spell, so a multi-statement change is one reload. */
const SETTLE_MS = 20;

export class ReloadScheduler {
  /** successful reloads */
  reloads = 0;
  /** failed reloads (each is retried) */
  failures = 0;
  /** reload requests (NOTIFY, cron tick) */
  requests = 0;
  /** requests merged into a reload already pending */
  coalesced = 0;

  private pending = false;
  private running: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private lastStartAt = Number.NEGATIVE_INFINITY;
  /** the current backoff step; 0 while the last reload succeeded */
  private retryMs = 0;
  private stopped = false;
  private readonly now: () => number;
  private readonly random: () => number;

  constructor(private readonly opts: ReloadSchedulerOptions) {
    this.now = opts.now ?? (() => performance.now());
    this.random = opts.random ?? Math.random;
  }

  /** true while a failed reload waits for its retry */
  get retrying(): boolean {
    return this.retryMs > 0;
  }

  /**
   * Ask for a reload. `fresh`: a sign that PostgreSQL is back (the listener
   * reconnected), so a retry waiting out its backoff goes now.
   */
  request(fresh = false): void {
    if (this.stopped) return;
    this.requests++;
    if (fresh && this.retryMs > 0 && this.timer && !this.running) {
      clearTimeout(this.timer);
      this.timer = null;
      this.retryMs = 0;
      this.pending = true;
      this.arm();
      return;
    }
    if (this.pending) {
      this.coalesced++;
      return;
    }
    this.pending = true;
    if (!this.running) this.arm();
  }

  /** Reload now (start-up); rejects when it failed, and the retries are already scheduled. */
  async runNow(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    await this.run(true);
  }

  private arm(delayMs?: number): void {
    if (this.timer || this.stopped) return;
    const wait = delayMs ?? Math.max(SETTLE_MS, this.lastStartAt + this.opts.minIntervalMs - this.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.run(false);
    }, wait);
  }

  private async run(rethrow: boolean): Promise<void> {
    if (this.stopped) return;
    this.pending = false;
    this.lastStartAt = this.now();
    let done!: () => void;
    this.running = new Promise<void>((resolve) => {
      done = resolve;
    });
    try {
      await this.opts.load();
      this.reloads++;
      this.retryMs = 0;
    } catch (err) {
      this.failures++;
      // the failed reload stood for every request before it: it must happen, later
      this.retryMs =
        this.retryMs === 0 ? this.opts.retryMinMs : Math.min(this.retryMs * 2, this.opts.retryMaxMs);
      // ±25% so that daemons restarted together do not retry in step
      const delay = Math.min(this.opts.retryMaxMs, Math.round(this.retryMs * (0.75 + this.random() * 0.5)));
      this.pending = true;
      this.running = null;
      done();
      this.arm(delay);
      this.opts.onFailure?.(err, delay);
      if (rethrow) throw err;
      return;
    }
    this.running = null;
    done();
    if (this.pending) this.arm();
  }

  /** No more reloads; resolves when the one in flight (if any) has ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
  }
}
