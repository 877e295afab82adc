import { createHmac, randomBytes } from 'node:crypto';

// Failed logins per source address and per user name (issue 12 item 4), as
// token buckets: `burst` failures at once, then one more every minute / limit.
// Past that, a login is refused without deriving a key (HTTP 429 / CONNACK
// 0x03) until a token is back, unless the same user name and password logged
// in successfully before: a sensor behind the guesser's address, or whose
// name is being guessed, still gets in. A small burst matters: each failure
// costs a key derivation (a core for ~100 ms), so the burst is what a guesser
// gets before the limit bites.

export interface LoginGuardOptions {
  /** failed logins per source address per minute */
  readonly maxPerAddress: number;
  /** failed logins per user name per minute */
  readonly maxPerUser: number;
  /** failures allowed at once before the per-minute rates apply */
  readonly burst: number;
  /** entries per map (addresses, user names, remembered logins) */
  readonly maxTracked: number;
  /** a user name shared by every client (the Redis session login): not limited per name */
  readonly sharedUserNames?: readonly string[];
  /** an entry forgotten before its bucket was full again, because its map was full */
  readonly onForgotten?: () => void;
  readonly now?: () => number;
}

/**
 * GCRA: per key, the time at which its bucket is full again (`full`). A failure
 * is allowed while full - now ≤ (burst - 1) × interval, and moves `full` on by
 * one interval. Insertion order = order of last change, so the front holds the
 * entries most likely to be full (forgettable) again.
 */
class Buckets {
  private readonly m = new Map<string, { full: number }>();
  constructor(
    private readonly perMinute: number,
    private readonly burst: number,
    private readonly max: number,
    private readonly onForgotten?: () => void,
  ) {}

  private get interval(): number {
    return 60_000 / this.perMinute;
  }

  /** ms until `key` may fail again, 0 when it may now */
  waitMs(key: string, t: number): number {
    const b = this.m.get(key);
    if (!b) return 0;
    return Math.max(0, b.full - t - (this.burst - 1) * this.interval);
  }

  /** one more failure; returns a function taking it back */
  add(key: string, t: number): () => void {
    let b = this.m.get(key);
    if (b) this.m.delete(key);
    else {
      this.prune(t);
      b = { full: t };
    }
    b.full = Math.max(b.full, t) + this.interval;
    this.m.set(key, b);
    const entry = b;
    const step = this.interval;
    return () => {
      entry.full -= step;
    };
  }

  private prune(t: number): void {
    for (const [k, b] of this.m) {
      if (this.m.size < this.max && b.full > t) return;
      // full again (nothing to remember), or the map is full: the front entry goes
      if (b.full > t) this.onForgotten?.();
      this.m.delete(k);
    }
  }

  get size(): number {
    return this.m.size;
  }
}

/** Long user names (MQTT allows 64 KiB) are keyed by a digest, so an entry stays small. */
const nameKey = (name: string) =>
  name.length <= 128 ? name : `#${createHmac('sha256', '').update(name).digest('base64')}`;

export interface Attempt {
  readonly pair: string;
  /** the one attempt of its pair that counts */
  readonly first?: boolean;
  readonly undo: ReadonlyArray<() => void>;
}

export class LoginGuard {
  private readonly addresses: Buckets;
  private readonly users: Buckets;
  /** HMACs (under a key of this process) of user name + password pairs that logged in */
  private readonly good = new Set<string>();
  private readonly secret = randomBytes(32);
  private readonly now: () => number;

  constructor(private readonly o: LoginGuardOptions) {
    this.addresses = new Buckets(o.maxPerAddress, o.burst, o.maxTracked, o.onForgotten);
    this.users = new Buckets(o.maxPerUser, o.burst, o.maxTracked, o.onForgotten);
    this.now = o.now ?? Date.now;
  }

  private shared(username: string): boolean {
    return this.o.sharedUserNames?.includes(username) ?? false;
  }

  private pair(username: string, password: string): string {
    return createHmac('sha256', this.secret)
      .update(username)
      .update('\u0000')
      .update(password)
      .digest('base64');
  }

  /** ms this login must wait (0: go ahead) */
  blockedMs(address: string | undefined, username: string, password: string): number {
    const t = this.now();
    const wait = Math.max(
      address ? this.addresses.waitMs(address, t) : 0,
      this.shared(username) ? 0 : this.users.waitMs(nameKey(username), t),
    );
    return wait > 0 && this.good.has(this.pair(username, password)) ? 0 : wait;
  }

  /** pairs being checked now: the same user name and password again (a fleet sharing a credential) counts once */
  private readonly pending = new Set<string>();

  /**
   * A login starts: it counts as failed until `end` says otherwise. Counting
   * only finished failures let any number of guesses queue up while the first
   * ones were still being derived.
   */
  begin(address: string | undefined, username: string, password: string): Attempt {
    const pair = this.pair(username, password);
    if (this.pending.has(pair)) return { pair, undo: [] };
    this.pending.add(pair);
    const t = this.now();
    return {
      pair,
      first: true,
      undo: [
        ...(address ? [this.addresses.add(address, t)] : []),
        ...(this.shared(username) ? [] : [this.users.add(nameKey(username), t)]),
      ],
    };
  }

  /** The login's outcome: only a wrong password (or an unknown name) stays counted. */
  end(attempt: Attempt, outcome: 'ok' | 'failed' | 'other'): void {
    if (attempt.first) this.pending.delete(attempt.pair);
    if (outcome === 'failed') return;
    for (const undo of attempt.undo) undo();
    if (outcome === 'ok') {
      if (this.good.size >= this.o.maxTracked) this.good.clear();
      this.good.add(attempt.pair);
    }
  }

  /** for tests and the status of the bounds */
  get tracked(): { addresses: number; users: number } {
    return { addresses: this.addresses.size, users: this.users.size };
  }
}
