import type { Redis } from 'ioredis';
import type { Reading } from '../ingest/reading.js';

// The newest reading per series in Redis (contract section 16), for
// dashboards that read current values from Redis rather than InfluxDB:
// `cache:latest:{building_id}` is a hash, field `{floor}/{room}/{sensor_type}`,
// value `{"value","unit","status","timestamp"}`.
//
// Coalesced: readings only update an in-memory map (newest per field); every
// `intervalMs` one pipeline writes each building that changed, so Redis sees at
// most one write per building per interval whatever the reading rate. Each
// write is one EVALSHA of the script below, which compares timestamps inside
// Redis: a stale value from this node (a late reading) or from another node
// or an earlier run of this one never replaces a newer one. A failing Redis
// never blocks ingestion: record() is synchronous and does no I/O, a failed
// flush puts its entries back (the newest still wins), and the map is bounded.

export const LATEST_PREFIX = 'cache:latest:';
export const LATEST_TTL_S = 86_400;

/**
 * KEYS[1] the hash; ARGV[1] the TTL; then (field, value) pairs. HMGET of the
 * fields, HSET of those whose stored timestamp is not newer (both per 500
 * fields), one EXPIRE. Timestamps are compared as strings: both sides are
 * Date.prototype.toISOString() output (fixed width, UTC), which sorts in time
 * order. A stored value that is not our JSON is replaced.
 */
const SCRIPT = `
local n = (#ARGV - 1) / 2
local written = 0
-- in chunks: unpack() of more than a few thousand values overflows Lua's C stack
for first = 1, n, 500 do
  local last = math.min(n, first + 499)
  local fields = {}
  for i = first, last do fields[#fields + 1] = ARGV[2 * i] end
  local cur = redis.call('HMGET', KEYS[1], unpack(fields))
  local set = {}
  for i = first, last do
    local v = ARGV[2 * i + 1]
    local old = cur[i - first + 1]
    local keep = false
    if old then
      local ot = string.match(old, '"timestamp":"([^"]*)"')
      local nt = string.match(v, '"timestamp":"([^"]*)"')
      if ot and nt and ot > nt then keep = true end
    end
    if not keep then
      set[#set + 1] = ARGV[2 * i]
      set[#set + 1] = v
    end
  end
  if #set > 0 then
    redis.call('HSET', KEYS[1], unpack(set))
    written = written + #set / 2
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return written
`;

/** ioredis with the script defined (EVALSHA, EVAL once when the server does not know it yet) */
type LatestRedis = Redis & {
  latestMerge(key: string, ttl: number, ...fieldValues: string[]): Promise<number>;
};

export interface RedisLatestOptions {
  readonly redis: Redis;
  /** at most one write per building per interval */
  readonly intervalMs: number;
  /** series (fields) waiting for the next write, over all buildings; new ones beyond are dropped */
  readonly maxPending: number;
  /** a reading not cached: the pending map was full */
  readonly onDrop: (n: number) => void;
  /** a flush Redis refused or did not answer (its entries wait for the next one) */
  readonly onError: (err: unknown) => void;
  /** buildings written, fields sent */
  readonly onWrite?: (buildings: number, fields: number) => void;
}

export class RedisLatestCache {
  /** building → field → newest reading since the last write */
  private pending = new Map<string, Map<string, Reading>>();
  private pendingCount = 0;
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  private readonly redis: LatestRedis;

  constructor(private readonly opts: RedisLatestOptions) {
    const redis = opts.redis as LatestRedis;
    if (typeof redis.latestMerge !== 'function')
      redis.defineCommand('latestMerge', { numberOfKeys: 1, lua: SCRIPT });
    this.redis = redis;
  }

  get pendingSeries(): number {
    return this.pendingCount;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.flush(), this.opts.intervalMs);
    this.timer.unref();
  }

  /** On the ingest path: no I/O, a map update per reading. */
  record(readings: readonly Reading[]): void {
    let dropped = 0;
    for (const r of readings) if (!this.put(r)) dropped++;
    if (dropped) this.opts.onDrop(dropped);
  }

  private put(r: Reading): boolean {
    let b = this.pending.get(r.building);
    const field = `${r.floor}/${r.room}/${r.sensorType}`;
    const cur = b?.get(field);
    if (cur) {
      // a late reading is not the latest (the script checks the same against what Redis holds)
      if (r.timestampMs >= cur.timestampMs) b!.set(field, r);
      return true;
    }
    if (this.pendingCount >= this.opts.maxPending) return false;
    if (!b) {
      b = new Map();
      this.pending.set(r.building, b);
    }
    b.set(field, r);
    this.pendingCount++;
    return true;
  }

  /** Writes every pending building in one pipeline; one flush at a time. */
  flush(): Promise<void> {
    if (this.flushing) return this.flushing;
    if (this.pendingCount === 0) return Promise.resolve();
    const batch = this.pending;
    this.pending = new Map();
    this.pendingCount = 0;
    this.flushing = this.write(batch).finally(() => {
      this.flushing = null;
    });
    return this.flushing;
  }

  private async write(batch: Map<string, Map<string, Reading>>): Promise<void> {
    const p = this.redis.pipeline() as unknown as {
      latestMerge(key: string, ttl: number, ...fieldValues: string[]): void;
      exec(): Promise<Array<[Error | null, unknown]> | null>;
    };
    const order: string[] = [];
    let fields = 0;
    for (const [building, series] of batch) {
      const args: string[] = [];
      for (const [field, r] of series) args.push(field, latestValue(r));
      fields += series.size;
      p.latestMerge(`${LATEST_PREFIX}${building}`, LATEST_TTL_S, ...args);
      order.push(building);
    }
    let failed: string[] = [];
    try {
      const results = (await p.exec()) ?? [];
      let firstErr: Error | null = null;
      results.forEach(([err], i) => {
        if (err) {
          firstErr ??= err;
          failed.push(order[i]!);
        }
      });
      if (results.length < order.length) failed.push(...order.slice(results.length));
      if (firstErr) this.opts.onError(firstErr);
    } catch (err) {
      failed = order;
      this.opts.onError(err);
    }
    this.opts.onWrite?.(order.length - failed.length, fields);
    // back into the map for the next flush, unless something newer arrived meanwhile
    let dropped = 0;
    for (const building of failed) {
      for (const r of batch.get(building)!.values()) if (!this.put(r)) dropped++;
    }
    if (dropped) this.opts.onDrop(dropped);
  }

  /** At shutdown: one last write of whatever is pending (errors are reported, not thrown). */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flushing;
    await this.flush();
  }
}

/** The hash value of contract section 16: value, unit, status, timestamp (ISO 8601 UTC). */
export function latestValue(r: Reading): string {
  // what JSON.stringify({value, unit, status, timestamp}) gives, at a fraction of the cost: one flush
  // encodes every changed series, and Date#toISOString was most of it (bench/README.md, issue 17)
  return `{"value":${JSON.stringify(r.value)},"unit":${jsonString(r.unit)},"status":${jsonString(r.status)},"timestamp":"${isoTime(r.timestampMs)}"}`;
}

/** units and statuses repeat ("W", "normal"): their JSON text is kept, up to a few dozen */
const strings = new Map<string, string>();
function jsonString(v: string): string {
  let j = strings.get(v);
  if (j === undefined) {
    j = JSON.stringify(v);
    if (strings.size < 64) strings.set(v, j);
  }
  return j;
}

/** toISOString, with the text up to the seconds kept for the last second seen (a flush's readings share a few) */
let lastSecond = Number.NaN;
let lastPrefix = '';
function isoTime(ms: number): string {
  // outside years 0000–9999 toISOString has another shape: not worth a cache
  if (!(ms >= 0 && ms < 253_402_300_800_000)) return new Date(ms).toISOString();
  const whole = Math.floor(ms); // as Date does: fractions of a millisecond are cut
  const sec = Math.floor(whole / 1000);
  if (sec !== lastSecond) {
    lastSecond = sec;
    lastPrefix = new Date(sec * 1000).toISOString().slice(0, 20); // "YYYY-MM-DDTHH:MM:SS."
  }
  const frac = whole - sec * 1000;
  return `${lastPrefix}${frac < 10 ? '00' : frac < 100 ? '0' : ''}${frac}Z`;
}
