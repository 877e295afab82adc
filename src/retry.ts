// Retry policies, by name, so every retry loop in the daemon says which one it
// follows instead of inventing its own numbers.
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

/** (sinkWrite's bounds are also the defaults of pipeline.retryMinMs / retryMaxMs in config/schema.ts) */
export const RETRY_POLICIES = {
  sinkWrite: { minMs: 1000, maxMs: 30_000 },
  diskIo: { minMs: 100, maxMs: 5000 },
} as const satisfies Record<string, BackoffBounds>;

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
  return jitteredBackoff(RETRY_POLICIES[name], random);
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
