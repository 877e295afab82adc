// Retry policy (Vector's retries.rs shape): exponential backoff with full
// jitter. Full jitter matters here: after an InfluxDB restart every instance
// and every in-flight batch retries at once, and spreading them uniformly over
// [0, ceiling) avoids hammering the server back down.

export interface RetryPolicy {
  /** delay before attempt number `attempt` (1 = first retry) */
  delayMs(attempt: number, retryAfterMs?: number): number;
}

export function fullJitterBackoff(
  minMs: number,
  maxMs: number,
  random: () => number = Math.random,
): RetryPolicy {
  return {
    delayMs(attempt, retryAfterMs) {
      const ceiling = Math.min(maxMs, minMs * 2 ** Math.max(0, attempt - 1));
      const jittered = random() * ceiling;
      // Retry-After is the server's explicit wish: never retry before it.
      return retryAfterMs !== undefined ? Math.min(maxMs, Math.max(retryAfterMs, jittered)) : jittered;
    },
  };
}
