// The one retry module: named policies, one wakeable sleep, one outage logger.
// Every retry loop in the daemon says which policy it follows instead of
// inventing its own numbers (Vector's retry policy objects).
//
// - sinkWrite (contract section 7): exponential backoff 1 s → 30 s with jitter
//   on network errors, 5xx and 429. Jitter spreads instances and in-flight
//   batches so a server that comes back is not hit by all of them in lockstep;
//   the 30 s ceiling (not 60) bounds how long a batch can sleep past the end of
//   an outage, and the writer's probe (pipeline/writer.ts) wakes sleepers as
//   soon as the server answers again, so resumption does not wait for a sleep.
// - diskIo: local file and socket errors (EMFILE, ENOSPC, EIO) on the hot
//   path: short, because the disk or the fd table usually recovers in well
//   under a second once a burst of connections goes away.
// - alertRedis: full jitter, many independent nodes must not synchronise.
// - redisReconnect / postgresReconnect / upstreamReconnect: reconnecting
//   clients; short first retries (a restart is usually quick), capped so a
//   long outage costs one attempt every few seconds.
// - metadataReload: a failed metadata load is retried until it succeeds, so a
//   disabled device is not admitted until the next cron run.

import type { Logger } from 'pino';

export interface RetryPolicy {
  /** delay before attempt number `attempt` (1 = first retry) */
  delayMs(attempt: number, retryAfterMs?: number): number;
}

export interface BackoffBounds {
  /** the first retry's delay (and the lower bound of every later one) */
  readonly minMs: number;
  /** no delay exceeds this, Retry-After included */
  readonly maxMs: number;
}

export interface NamedPolicy extends BackoffBounds {
  /** equal: uniform in [ceiling/2, ceiling]; full: uniform in [0, ceiling) */
  readonly jitter: 'equal' | 'full';
}

/** (sinkWrite's bounds are also the defaults of pipeline.retryMinMs / retryMaxMs in config/schema.ts) */
export const RETRY_POLICIES = {
  sinkWrite: { minMs: 1000, maxMs: 30_000, jitter: 'equal' },
  diskIo: { minMs: 100, maxMs: 5000, jitter: 'equal' },
  alertRedis: { minMs: 250, maxMs: 5000, jitter: 'full' },
  redisReconnect: { minMs: 200, maxMs: 5000, jitter: 'equal' },
  postgresReconnect: { minMs: 500, maxMs: 10_000, jitter: 'equal' },
  upstreamReconnect: { minMs: 1000, maxMs: 30_000, jitter: 'equal' },
  metadataReload: { minMs: 1000, maxMs: 30_000, jitter: 'equal' },
} as const satisfies Record<string, NamedPolicy>;

export type RetryPolicyName = keyof typeof RETRY_POLICIES;

/**
 * Exponential backoff with "equal jitter": attempt n waits uniformly in
 * [ceiling/2, ceiling] (never below minMs), ceiling = min(maxMs, minMs·2^(n−1)).
 * So the delays run from minMs to maxMs as the contract says, yet still spread.
 */
export function jitteredBackoff(
  bounds: BackoffBounds,
  random: () => number = Math.random,
): RetryPolicy & BackoffBounds {
  const { minMs, maxMs } = bounds;
  return {
    minMs,
    maxMs,
    delayMs(attempt, retryAfterMs) {
      const ceiling = Math.min(maxMs, minMs * 2 ** Math.max(0, attempt - 1));
      const floor = Math.min(ceiling, Math.max(minMs, ceiling / 2));
      const jittered = floor + random() * (ceiling - floor);
      // Retry-After is the server's explicit wish: never retry before it.
      return retryAfterMs !== undefined ? Math.min(maxMs, Math.max(retryAfterMs, jittered)) : jittered;
    },
  };
}

export function retryPolicy(name: RetryPolicyName, random?: () => number): RetryPolicy & BackoffBounds {
  const p: NamedPolicy = RETRY_POLICIES[name];
  if (p.jitter === 'full')
    return { ...fullJitterBackoff(p.minMs, p.maxMs, random), minMs: p.minMs, maxMs: p.maxMs };
  return jitteredBackoff(p, random);
}

/**
 * Full jitter, uniform in [0, ceiling): for retries where many independent
 * clients must not synchronise at all (alert delivery to Redis) and there is
 * no lower bound to keep.
 */
export function fullJitterBackoff(
  minMs: number,
  maxMs: number,
  random: () => number = Math.random,
): RetryPolicy {
  return {
    delayMs(attempt, retryAfterMs) {
      const ceiling = Math.min(maxMs, minMs * 2 ** Math.max(0, attempt - 1));
      const jittered = random() * ceiling;
      return retryAfterMs !== undefined ? Math.min(maxMs, Math.max(retryAfterMs, jittered)) : jittered;
    },
  };
}

interface Sleeper {
  readonly wakeable: boolean;
  wake(): void;
}

/**
 * Sleeps that can be cut short: every one at once (shutdown), or only those
 * marked wakeable (a probe saw the server answer again). Timers are unref'd:
 * a retry sleep never keeps the process alive.
 */
export class Sleeps {
  private readonly sleepers = new Set<Sleeper>();

  sleep(ms: number, wakeable = false): Promise<void> {
    return new Promise((resolve) => {
      const sleeper: Sleeper = {
        wakeable,
        wake: () => {
          clearTimeout(timer);
          this.sleepers.delete(sleeper);
          resolve();
        },
      };
      const timer = setTimeout(sleeper.wake, ms);
      timer.unref();
      this.sleepers.add(sleeper);
    });
  }

  /** is any wakeable sleep waiting */
  get waiting(): boolean {
    for (const s of this.sleepers) if (s.wakeable) return true;
    return false;
  }

  /** wake the wakeable sleeps (or all of them); returns how many */
  wake(all = false): number {
    const woken = [...this.sleepers].filter((s) => all || s.wakeable);
    for (const s of woken) s.wake();
    return woken.length;
  }
}

/**
 * One warning when something starts failing and one line when it recovers,
 * however many attempts fail in between ("failing since … / recovered after …").
 */
export class Outage {
  since: number | null = null;
  lastError: string | null = null;
  failures = 0;

  constructor(
    private readonly log: Logger,
    /** what is failing, e.g. "Redis alert delivery" */
    private readonly what: string,
    private readonly now: () => number = Date.now,
    /** false: the owner logs the start itself (with details only it has); the recovery is still logged here */
    private readonly announce = true,
  ) {}

  get failing(): boolean {
    return this.since !== null;
  }

  /** a failed attempt; logs only the first of an outage. Returns the attempt number (1 = first). */
  fail(err: unknown, fields: Record<string, unknown> = {}): number {
    this.lastError = err instanceof Error ? err.message : String(err);
    this.failures++;
    if (this.since === null) {
      this.since = this.now();
      if (this.announce) this.log.warn({ ...fields, err: this.lastError }, `${this.what} failing; retrying`);
    }
    return this.failures;
  }

  /** a successful attempt; logs the recovery when an outage was going on */
  ok(fields: Record<string, unknown> = {}): void {
    if (this.since !== null) {
      this.log.info(
        { ...fields, downForMs: this.now() - this.since, failures: this.failures },
        `${this.what} recovered`,
      );
    }
    this.since = null;
    this.lastError = null;
    this.failures = 0;
  }
}
