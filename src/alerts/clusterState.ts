import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Reading } from '../ingest/reading.js';
import { Outage } from '../retry.js';
import { type AlertEvent, alertField } from './evaluator.js';
import { STREAM_KEY } from './redisOutput.js';

// Alerts across nodes (contract section 14, CLUSTER_MODE=redis).
//
// Each series (building/floor/room/type) is owned by the node that last
// received a reading of it: `cluster:alerts:owner:{series}` holds that node's
// id with a lease. Ownership is cached locally, so a reading of an owned
// series costs one map lookup; the lease is refreshed at most every
// REFRESH_MS. The first reading of a series a node does not own starts a claim
// (one Lua script: set the owner, read the series' active alerts, tell the
// previous owner); its readings wait for the answer (a Redis round trip, never
// the publisher: the PUBACK does not depend on alerts), then are evaluated on
// top of the cluster's state, so an episode raised on another node continues
// with its id instead of being raised again. The node that lost the series is
// told on `cluster:alerts:moved` and drops it, offline watch included.
//
// Every event then passes a gate (one Lua script per event) before it is
// delivered anywhere: a raise only when no episode of that rule is active for
// the series, a clear only of the active episode, and neither from a node
// that no longer owns the series. Delivery to Redis (PUBLISH, XADD, the active
// hash, the notification) happens inside the gate, and MQTT follows its
// answer, so two nodes racing cannot both raise.
//
// Redis down: claims fail fast and readings are evaluated locally at once;
// events wait in the Redis queue and go to MQTT right away (not gated). That
// is the trade-off: during an outage a series that moves between nodes may be
// raised on both (README, "Alerts in a cluster").

const OWNER_PREFIX = 'cluster:alerts:owner:';
export const MOVED_CHANNEL = 'cluster:alerts:moved';
/** the contract's alert channels, alerts:{building_id} */
const EVENTS_PATTERN = 'alerts:building_*';
/** an owner's lease: a series silent this long is nobody's (any node may report it offline) */
export const LEASE_MS = 60_000;
/** a node re-asserts a series it keeps receiving at most this often */
export const REFRESH_MS = 5_000;

/**
 * KEYS: owner key, active hash. ARGV: node id, lease ms, moved channel, series, fields…
 * Answers the previous owner ('' for none) and the hash value of each field ('' for none).
 */
const CLAIM_LUA = `
local old = redis.call('GET', KEYS[1]) or ''
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if old ~= '' and old ~= ARGV[1] then
  redis.call('PUBLISH', ARGV[3], cjson.encode({series = ARGV[4], from = old, to = ARGV[1]}))
end
local out = {old}
for i = 5, #ARGV do out[#out + 1] = redis.call('HGET', KEYS[2], ARGV[i]) or '' end
return out
`;

/**
 * Lease refreshes of many series at once. KEYS: owner keys. ARGV: node id, lease ms.
 * A key this node holds gets its lease again (answer 0); any other (expired,
 * or taken by another node) is left alone (answer 1) for a full claim, which
 * notifies the previous owner and reads the series' state.
 */
const REFRESH_LUA = `
local out = {}
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
    out[i] = 0
  else
    out[i] = 1
  end
end
return out
`;
/** lease refreshes due are sent together, at most this long after they fell due (the lease is 60 s) */
const REFRESH_BATCH_MS = 200;
/** series per REFRESH_LUA call (Redis runs one script at a time: kept short) */
const REFRESH_BATCH_MAX = 500;

/**
 * KEYS: active hash, owner key, stream, notification key.
 * ARGV: field, event body, state, event id, node id, channel.
 * Answers {'ok'}, {'dup'} (this very event was applied before), {'exists', body},
 * {'absent'} (nothing of this id to clear) or {'not_owner', owner}.
 */
const GATE_LUA = `
local owner = redis.call('GET', KEYS[2])
if owner and owner ~= ARGV[5] then return {'not_owner', owner} end
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local curId = false
if cur then
  local ok, d = pcall(cjson.decode, cur)
  if ok and type(d) == 'table' then curId = d.id end
end
if ARGV[3] == 'raised' then
  if cur then
    if curId == ARGV[4] then return {'dup'} end
    return {'exists', cur}
  end
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
else
  if curId ~= ARGV[4] then return {'absent'} end
  redis.call('HDEL', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', ARGV[6], ARGV[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', '100000', '*', 'event', ARGV[2])
redis.call('SET', KEYS[4], ARGV[2], 'EX', 86400)
return {'ok'}
`;

/**
 * KEYS: active hash, owner key. ARGV: field, body ('' = not active here), id, node id.
 * Repairs a field only for a series this node owns (or nobody does), and never
 * overwrites or deletes another episode than the one it knows.
 */
const REPAIR_LUA = `
local owner = redis.call('GET', KEYS[2])
if owner and owner ~= ARGV[4] then return 0 end
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local curId = false
if cur then
  local ok, d = pcall(cjson.decode, cur)
  if ok and type(d) == 'table' then curId = d.id end
end
if ARGV[2] ~= '' then
  if cur and curId ~= ARGV[3] then return 0 end
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
elseif cur and curId == ARGV[3] then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
`;

type ClusterRedis = Redis & {
  eiAlertClaim(...args: Array<string | number>): Promise<string[]>;
  eiAlertGate(...args: string[]): Promise<string[]>;
  eiAlertRepair(...args: string[]): Promise<number>;
  eiAlertRefresh(numKeys: number, ...args: Array<string | number>): Promise<number[]>;
};

export type SeriesId = Pick<Reading, 'building' | 'buildingId' | 'floor' | 'room' | 'sensorType'>;
export type RuleAt = Pick<AlertEvent, 'building_id' | 'floor' | 'room' | 'sensor_type' | 'rule_id'>;

/** What the alert service lets the cluster do to its state. */
export interface ClusterHost {
  /** the rules of a series (its evaluator state is created) */
  ruleIds(s: SeriesId): string[];
  /** readings that waited for a claim, in arrival order */
  evaluateNow(readings: ReadonlyArray<readonly [Reading, number]>): void;
  /** one rule's episode as the cluster holds it (null: none), unless `keep` says the local one is newer */
  adopt(at: RuleAt, event: AlertEvent | null, keep?: (local: AlertEvent) => boolean): void;
  /** a clear that lost a race: the episode it ends is `episode` (adopted meanwhile); emit that clear */
  clearInstead(clear: AlertEvent, episode: AlertEvent): void;
  /** the series moved to another node: drop it without events */
  forget(building: string, floor: string, room: string, sensorType: string): void;
  /** events the gate let through (or that went out while Redis was unreachable) */
  deliverMqtt(events: readonly AlertEvent[]): void;
}

interface Claim {
  state: 'claiming' | 'owned';
  /** when the lease was last asserted (or the claim started) */
  at: number;
  /** the state was read from Redis at the last claim (false after a failed one: the next re-reads it) */
  synced: boolean;
  readonly series: SeriesId;
  pending: Array<readonly [Reading, number]> | null;
  /** ids of events emitted while the claim was in flight: newer than what it reads */
  during: Set<string> | null;
}

export interface ClusterCounters {
  /** claims by outcome: new, moved (taken from another node), refresh, failed */
  claims: (outcome: string) => void;
  /** gate answers: ok, dup, exists, absent, not_owner, stale, unreachable */
  gate: (verdict: string) => void;
  /** readings not evaluated because alerts.clusterMaxPending of a series were waiting for its claim */
  pendingDropped: () => void;
}

export interface AlertClusterOptions {
  readonly redis: Redis;
  readonly nodeId: string;
  readonly log: Logger;
  readonly host: ClusterHost;
  readonly counters: ClusterCounters;
  /** readings of one series held while it is claimed */
  readonly maxPending: number;
  /** series whose ownership is cached (the evaluator's bound) */
  readonly maxSeries: number;
  readonly leaseMs?: number;
  readonly refreshMs?: number;
}

export function seriesKey(building: string, floor: string, room: string, sensorType: string): string {
  return `${building}/${floor}/${room}/${sensorType}`;
}

function parseEvent(body: string): AlertEvent | null {
  if (!body) return null;
  try {
    const e = JSON.parse(body) as AlertEvent;
    return e?.state === 'raised' && typeof e.id === 'string' ? e : null;
  } catch {
    return null;
  }
}

export class AlertCluster {
  private readonly claims = new Map<string, Claim>();
  /** the claim an event was emitted under: an event of a series claimed anew since is stale */
  private readonly tags = new WeakMap<AlertEvent, Claim | null>();
  /** events that reached MQTT while Redis was unreachable: not delivered there again */
  private readonly mqttDone = new WeakSet<AlertEvent>();
  /** events the gate answered (a retried batch skips them) */
  private readonly decided = new WeakSet<AlertEvent>();
  /** emitted here and not answered by the gate yet: newer than anything Redis holds */
  private readonly inGate = new WeakSet<AlertEvent>();
  /** a raise refused because another node's episode was active: its id → that episode (a race: few) */
  private readonly replaced = new Map<string, AlertEvent>();
  private readonly redis: ClusterRedis;
  private sub: Redis | null = null;
  private readonly leaseMs: number;
  private readonly refreshMs: number;
  private readonly outage: Outage;
  private stopped = false;
  /** owned, synced series whose lease is due: re-asserted together (one script per batch, not per series) */
  private refreshDue: Array<[string, Claim]> = [];
  private refreshTimer: NodeJS.Timeout | null = null;

  constructor(private readonly opts: AlertClusterOptions) {
    this.leaseMs = opts.leaseMs ?? LEASE_MS;
    this.refreshMs = opts.refreshMs ?? REFRESH_MS;
    this.outage = new Outage(opts.log, 'Redis alert ownership claims');
    const r = opts.redis as ClusterRedis;
    if (typeof r.eiAlertClaim !== 'function') {
      r.defineCommand('eiAlertClaim', { numberOfKeys: 2, lua: CLAIM_LUA });
      r.defineCommand('eiAlertGate', { numberOfKeys: 4, lua: GATE_LUA });
      r.defineCommand('eiAlertRepair', { numberOfKeys: 2, lua: REPAIR_LUA });
    }
    if (typeof r.eiAlertRefresh !== 'function') r.defineCommand('eiAlertRefresh', { lua: REFRESH_LUA });
    this.redis = r;
  }

  /** Listen for series taken over by other nodes (a connection of its own: a subscriber can do nothing else). */
  start(): void {
    const sub = this.opts.redis.duplicate();
    this.sub = sub;
    sub.on('error', () => {}); // the main client logs Redis outages
    sub.on('ready', () => {
      sub.subscribe(MOVED_CHANNEL).catch(() => {});
      sub.psubscribe(EVENTS_PATTERN).catch(() => {});
    });
    sub.on('message', (_channel: string, text: string) => this.onMoved(text));
    sub.on('pmessage', (_pattern: string, _channel: string, text: string) => this.onEvent(text));
    if (sub.status === 'wait') sub.connect().catch(() => {});
  }

  stop(): void {
    this.stopped = true;
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
    this.refreshDue = [];
    this.sub?.disconnect();
    this.sub = null;
  }

  get cachedSeries(): number {
    return this.claims.size;
  }

  /**
   * Another node's event (the contract's PUBLISH alerts:{building_id}): the
   * active set of series this node does not hold follows it, so /api/alerts,
   * the metrics and a later claim start from the cluster's state. Series this
   * node holds are decided here and by the gate, never by this echo.
   */
  private onEvent(text: string): void {
    let e: AlertEvent;
    try {
      e = JSON.parse(text) as AlertEvent;
    } catch {
      return;
    }
    if (typeof e?.id !== 'string' || typeof e.rule_id !== 'string') return;
    if (this.claims.has(seriesKey(e.building_id, e.floor, e.room, e.sensor_type))) return;
    if (e.state === 'raised') this.opts.host.adopt(e, e, (local) => this.inGate.has(local));
    else if (e.state === 'cleared') this.opts.host.adopt(e, null, (local) => local.id !== e.id);
  }

  private onMoved(text: string): void {
    let m: { series?: unknown; from?: unknown };
    try {
      m = JSON.parse(text) as typeof m;
    } catch {
      return;
    }
    if (m.from !== this.opts.nodeId || typeof m.series !== 'string') return;
    const key = m.series;
    if (!this.claims.has(key)) return;
    // the notice may be older than this node's own newer claim (the sensor came back at once):
    // the owner key says who holds the series now; unreadable, the series is dropped (claimed again)
    this.redis.get(OWNER_PREFIX + key).then(
      (owner) => {
        if (owner !== this.opts.nodeId) this.lose(key);
      },
      () => this.lose(key),
    );
  }

  /** the series is another node's now: forget it (offline watch included) */
  private lose(key: string): void {
    const c = this.claims.get(key);
    // a claim in flight is this node's newer claim: the notice is older than it
    if (c?.state === 'claiming') return;
    this.claims.delete(key);
    const [building, floor, room, sensorType] = key.split('/');
    if (sensorType === undefined) return;
    this.opts.host.forget(building!, floor!, room!, sensorType);
  }

  /**
   * The hot path: may this reading be evaluated now? False when its series is
   * being claimed: it is evaluated (in order) when the claim answers.
   */
  admit(r: Reading, receivedAtMs: number): boolean {
    if (this.stopped) return true;
    const key = seriesKey(r.building, r.floor, r.room, r.sensorType);
    const c = this.claims.get(key);
    if (c === undefined) {
      // beyond the bound the evaluator does not track the series either
      if (this.claims.size >= this.opts.maxSeries) return true;
      const claim: Claim = {
        state: 'claiming',
        at: receivedAtMs,
        synced: false,
        series: r,
        pending: [[r, receivedAtMs]],
        during: null,
      };
      this.claims.set(key, claim);
      void this.claim(key, claim, true);
      return false;
    }
    if (c.state === 'claiming') {
      if (c.pending!.length < this.opts.maxPending) c.pending!.push([r, receivedAtMs]);
      else this.opts.counters.pendingDropped();
      return false;
    }
    if (receivedAtMs - c.at >= this.refreshMs) {
      c.at = receivedAtMs;
      // a series whose state was not read (a failed claim) is claimed in full; the others are batched
      if (c.synced) this.refreshLater(key, c);
      else void this.claim(key, c, false);
    }
    return true;
  }

  private refreshLater(key: string, c: Claim): void {
    this.refreshDue.push([key, c]);
    this.refreshTimer ??= setTimeout(() => {
      this.refreshTimer = null;
      void this.refreshBatch();
    }, REFRESH_BATCH_MS);
  }

  /**
   * Re-asserts every lease that fell due (a node keeping 10,000 series sent
   * 2,000 claim scripts a second, one per series: bench/README.md). A series
   * another node took, or nobody holds any more, gets a full claim (the
   * take-over is noticed and its state read, as before).
   */
  private async refreshBatch(): Promise<void> {
    const due = this.refreshDue;
    this.refreshDue = [];
    for (let i = 0; i < due.length; i += REFRESH_BATCH_MAX) {
      const chunk = due.slice(i, i + REFRESH_BATCH_MAX);
      try {
        const answers = await this.redis.eiAlertRefresh(
          chunk.length,
          ...chunk.map(([key]) => OWNER_PREFIX + key),
          this.opts.nodeId,
          this.leaseMs,
        );
        this.outage.ok();
        chunk.forEach(([key, c], j) => {
          if (this.stopped || this.claims.get(key) !== c) return; // lost meanwhile
          if (answers[j] === 0) this.opts.counters.claims('refresh');
          else void this.claim(key, c, false);
        });
      } catch (err) {
        this.outage.fail(err);
        for (const [, c] of chunk) {
          this.opts.counters.claims('failed');
          // the next refresh claims in full and reads the cluster's state
          c.synced = false;
        }
      }
    }
  }

  /** Claim (or re-assert) a series; on a first claim or a takeover, its state becomes the cluster's. */
  private async claim(key: string, c: Claim, first: boolean): Promise<void> {
    const s = c.series;
    const ids = this.opts.host.ruleIds(s);
    const fields = ids.map((id) => `${s.floor}/${s.room}/${s.sensorType}/${id}`);
    try {
      const [old = '', ...values] = await this.redis.eiAlertClaim(
        OWNER_PREFIX + key,
        `alerts:active:${s.building}`,
        this.opts.nodeId,
        this.leaseMs,
        MOVED_CHANNEL,
        key,
        ...fields,
      );
      this.outage.ok();
      if (this.claims.get(key) !== c) return; // lost again meanwhile
      const movedHere = old !== '' && old !== this.opts.nodeId;
      this.opts.counters.claims(first ? (movedHere ? 'moved' : 'new') : movedHere ? 'moved' : 'refresh');
      if (first || movedHere || !c.synced) {
        // what this node emitted since the claim was sent, or has not had answered, is newer than Redis
        const during = c.during;
        const keep = (local: AlertEvent) => (during?.has(local.id) ?? false) || this.inGate.has(local);
        ids.forEach((rule_id, i) => {
          const at = {
            building_id: s.building,
            floor: s.floor,
            room: s.room,
            sensor_type: s.sensorType,
            rule_id,
          };
          this.opts.host.adopt(at, parseEvent(values[i] ?? ''), keep);
        });
        if (movedHere)
          this.opts.log.debug({ series: key, from: old }, 'alerts: series moved here; its episodes continue');
      }
      c.synced = true;
    } catch (err) {
      this.opts.counters.claims('failed');
      this.outage.fail(err);
      // evaluated locally; the next refresh claims again and reads the cluster's state
      c.synced = false;
    } finally {
      if (c.state === 'claiming') {
        c.state = 'owned';
        c.at = Date.now();
        const pending = c.pending;
        c.pending = null;
        c.during = null;
        if (pending?.length && this.claims.get(key) === c) this.opts.host.evaluateNow(pending);
      }
    }
  }

  /** Called for every event as it is emitted (before the journal and delivery). */
  tag(e: AlertEvent): void {
    const c = this.claims.get(seriesKey(e.building_id, e.floor, e.room, e.sensor_type)) ?? null;
    this.tags.set(e, c);
    this.inGate.add(e);
    if (c?.state === 'claiming') {
      c.during ??= new Set();
      c.during.add(e.id);
    }
  }

  /** whether this node holds the series of an event (for re-asserting the active hash) */
  owns(e: AlertEvent): boolean {
    return this.claims.get(seriesKey(e.building_id, e.floor, e.room, e.sensor_type))?.state === 'owned';
  }

  /** an event of a series claimed anew (or lost) since it was emitted: never delivered */
  private stale(e: AlertEvent): boolean {
    const tag = this.tags.get(e);
    if (tag === undefined) return false;
    return this.claims.get(seriesKey(e.building_id, e.floor, e.room, e.sensor_type)) !== (tag ?? undefined);
  }

  /**
   * Deliver a batch through the gate (AlertRedisOutput's send in cluster
   * mode). Throws when Redis could not answer for every event: the batch is
   * retried, and the events already answered are skipped then.
   */
  async send(batch: readonly AlertEvent[]): Promise<void> {
    const todo = batch.filter((e) => !this.decided.has(e));
    const live: AlertEvent[] = [];
    for (const e of todo) {
      if (this.stale(e)) {
        this.decided.add(e);
        this.inGate.delete(e);
        this.opts.counters.gate('stale');
      } else live.push(e);
    }
    if (!live.length) return;
    const p = this.redis.pipeline() as ReturnType<Redis['pipeline']> & {
      eiAlertGate(...args: string[]): unknown;
    };
    for (const e of live) {
      p.eiAlertGate(
        `alerts:active:${e.building_id}`,
        OWNER_PREFIX + seriesKey(e.building_id, e.floor, e.room, e.sensor_type),
        STREAM_KEY,
        `notification:${e.building_id}`,
        alertField(e),
        JSON.stringify(e),
        e.state,
        e.id,
        this.opts.nodeId,
        `alerts:${e.building_id}`,
      );
    }
    let results: Array<[Error | null, unknown]> | null;
    try {
      results = await p.exec();
    } catch (err) {
      results = live.map(() => [err as Error, null]);
    }
    const deliver: AlertEvent[] = [];
    const unanswered: AlertEvent[] = [];
    let firstErr: Error | null = null;
    live.forEach((e, i) => {
      const [err, reply] = results?.[i] ?? [new Error('no reply'), null];
      if (err) {
        firstErr ??= err;
        unanswered.push(e);
        return;
      }
      this.decided.add(e);
      this.inGate.delete(e);
      const [verdict = '', detail = ''] = reply as string[];
      this.opts.counters.gate(verdict);
      if (verdict === 'ok' || verdict === 'dup') {
        if (!this.mqttDone.has(e)) deliver.push(e);
      } else if (verdict === 'exists') {
        // another node raised this episode first: continue it, do not raise it again
        const episode = parseEvent(detail);
        this.opts.host.adopt(e, episode);
        if (episode) {
          if (this.replaced.size >= 1000) this.replaced.clear();
          this.replaced.set(e.id, episode);
        }
      } else if (verdict === 'not_owner') {
        this.lose(seriesKey(e.building_id, e.floor, e.room, e.sensor_type));
      } else if (verdict === 'absent' && e.state === 'cleared') {
        // the clear of a raise that lost a race (emitted before that answer came): it ends the
        // episode that won; otherwise the episode was cleared elsewhere: nothing to deliver
        const episode = this.replaced.get(e.id);
        this.replaced.delete(e.id);
        if (episode) this.opts.host.clearInstead(e, episode);
      }
    });
    if (deliver.length) this.opts.host.deliverMqtt(deliver);
    if (firstErr) {
      // Redis unreachable: MQTT subscribers are not kept waiting (not gated: the outage trade-off)
      const now = unanswered.filter((e) => !this.mqttDone.has(e));
      for (const e of now) this.mqttDone.add(e);
      if (now.length) {
        for (const _ of now) this.opts.counters.gate('unreachable');
        this.opts.host.deliverMqtt(now);
      }
      throw firstErr;
    }
  }

  /** AlertRedisOutput's repair in cluster mode: only series this node owns, only the episode it knows. */
  async repair(
    fields: ReadonlyArray<{ building: string; field: string; id: string }>,
    active: (building: string, field: string) => AlertEvent | null,
  ): Promise<void> {
    const p = this.redis.pipeline() as ReturnType<Redis['pipeline']> & {
      eiAlertRepair(...args: string[]): unknown;
    };
    for (const { building, field, id } of fields) {
      const e = active(building, field);
      const [floor, room, sensorType] = field.split('/');
      p.eiAlertRepair(
        `alerts:active:${building}`,
        OWNER_PREFIX + seriesKey(building, floor!, room!, sensorType!),
        field,
        e ? JSON.stringify(e) : '',
        e ? e.id : id,
        this.opts.nodeId,
      );
    }
    const results = await p.exec();
    const failed = results?.find(([err]) => err);
    if (failed) throw failed[0];
  }
}
