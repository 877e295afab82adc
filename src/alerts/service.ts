import type { Aedes } from 'aedes';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Reading } from '../ingest/reading.js';
import { RateLimitedLog } from '../log.js';
import type { Metrics } from '../metrics.js';
import { retryPolicy } from '../retry.js';
import type { Scheduler } from '../scheduler.js';
import { AlertCluster, type ClusterCounters, type RuleAt, type SeriesId } from './clusterState.js';
import { type ActiveAlert, AlertEvaluator, type AlertEvent, alertField, alertKind } from './evaluator.js';
import { AlertJournal } from './journal.js';
import type { Locale } from './messages.js';
import { AlertMqttOutput } from './mqttOutput.js';
import { AlertRedisOutput } from './redisOutput.js';
import type { AlertRule } from './rules.js';

// Alerts as a side branch of ingest: readings in (once, as they are
// accepted), events out through the journal to MQTT and Redis. The evaluator
// decides; the journal makes its decisions survive a restart; the outputs
// deliver without ever holding up ingestion.

export interface AlertServiceOptions {
  readonly dataDir: string;
  readonly locale: Locale;
  readonly fsync: boolean;
  readonly redis: Redis | null;
  readonly maxQueued: number;
  readonly maxSeries: number;
  readonly maxActivePerBuilding: number;
  readonly metrics: Metrics;
  readonly log: Logger;
  /** runs the offline tick, the watch-list save and the Redis re-assert; none: private timers (tests) */
  readonly scheduler?: Scheduler;
  /** CLUSTER_MODE=redis (needs redis): series ownership and the raise/clear gate (src/alerts/clusterState.ts) */
  readonly cluster?: {
    readonly nodeId: string;
    readonly maxPending: number;
    readonly counters: ClusterCounters;
    readonly leaseMs?: number;
    readonly refreshMs?: number;
  };
}

const TICK_MS = 1000;
const SAVE_SEEN_MS = 30_000;
const REASSERT_MS = 60_000;

export class AlertService {
  private readonly evaluator: AlertEvaluator;
  private readonly mqtt: AlertMqttOutput;
  private readonly redisOut: AlertRedisOutput | null;
  private journal: AlertJournal | null = null;
  private timers: NodeJS.Timeout[] = [];
  private restored: { active: ActiveAlert[]; seen: Parameters<AlertEvaluator['restoreSeen']>[0] } | null =
    null;
  /** the raised event of each active alert by building and hash field (for /api and Redis repairs) */
  private readonly activeIndex = new Map<string, Map<string, AlertEvent>>();
  private rulesKey = '';
  private readonly outputs: Array<{ deliver(events: readonly AlertEvent[]): void }> = [];
  private readonly cluster: AlertCluster | null = null;

  constructor(private readonly opts: AlertServiceOptions) {
    const refusals = new RateLimitedLog(opts.log);
    this.evaluator = new AlertEvaluator({
      locale: opts.locale,
      maxSeries: opts.maxSeries,
      maxActivePerBuilding: opts.maxActivePerBuilding,
      // beyond the bounds nothing existing is dropped: new series are not watched, new alerts not raised
      onRefused: (what, building) => {
        if (what === 'series') {
          opts.metrics.seriesUntracked.inc({ table: 'alerts' });
          refusals.warn(
            'alerts-series',
            { maxSeries: opts.maxSeries, building },
            'alerts: alerts.maxSeries reached; readings of new series are not evaluated',
          );
        } else {
          opts.metrics.alertsRefused.inc({ reason: 'max_active_per_building' });
          refusals.warn(
            'alerts-active',
            { maxActivePerBuilding: opts.maxActivePerBuilding, building },
            'alerts: alerts.maxActivePerBuilding reached in this building; alert not raised',
          );
        }
      },
    });
    this.mqtt = new AlertMqttOutput(opts.metrics, opts.log);
    if (opts.cluster && opts.redis) {
      this.cluster = new AlertCluster({
        redis: opts.redis,
        nodeId: opts.cluster.nodeId,
        log: opts.log,
        counters: opts.cluster.counters,
        maxPending: opts.cluster.maxPending,
        maxSeries: opts.maxSeries,
        leaseMs: opts.cluster.leaseMs,
        refreshMs: opts.cluster.refreshMs,
        host: {
          ruleIds: (s: SeriesId) => this.evaluator.ruleIds(s),
          evaluateNow: (readings) => this.evaluateNow(readings),
          adopt: (at, event, keep) => this.adopt(at, event, keep),
          clearInstead: (clear, episode) => this.clearInstead(clear, episode),
          forget: (b, f, r, t) => this.forget(b, f, r, t),
          deliverMqtt: (events) => this.mqtt.deliver(events),
        },
      });
    }
    this.redisOut = opts.redis
      ? new AlertRedisOutput({
          redis: opts.redis,
          metrics: opts.metrics,
          log: opts.log,
          retry: retryPolicy('alertRedis'),
          maxQueued: opts.maxQueued,
          activeEvent: (b, f) => this.activeIndex.get(b)?.get(f) ?? null,
          gate: this.cluster ?? undefined,
        })
      : null;
  }

  /** Reads the journal; the state comes back in `restore()`, once the rules are known. */
  async open(): Promise<void> {
    const { journal, active, seen, existed } = await AlertJournal.open({
      dataDir: this.opts.dataDir,
      sync: this.opts.fsync,
      log: this.opts.log,
    });
    this.journal = journal;
    let restoredActive = active;
    if (this.cluster) {
      // in a cluster Redis holds the truth: other nodes may have continued or cleared this
      // node's episodes while it was down (the journal is the fallback when Redis is unreachable)
      const fromRedis = await this.fromRedis();
      if (fromRedis) restoredActive = fromRedis;
    } else if (!existed && this.opts.redis) restoredActive = (await this.fromRedis()) ?? [];
    this.restored = { active: restoredActive, seen };
  }

  /**
   * A fresh data directory (a new container, a lost volume) with Redis
   * configured: the active alerts come back from alerts:active:*. With a
   * journal present the journal is the truth: it also knows the episodes
   * whose Redis delivery was still queued.
   */
  private async fromRedis(): Promise<ActiveAlert[] | null> {
    const redis = this.opts.redis!;
    const out: ActiveAlert[] = [];
    try {
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', 'alerts:active:*', 'COUNT', 200);
        cursor = next;
        for (const key of keys) {
          const fields = await redis.hgetall(key);
          for (const body of Object.values(fields)) {
            let e: AlertEvent;
            try {
              e = JSON.parse(body) as AlertEvent;
            } catch {
              continue; // not ours, or damaged: one bad field must not lose the others
            }
            if (e?.state !== 'raised' || typeof e.rule_id !== 'string') continue;
            out.push({ kind: alertKind(e), event: e });
          }
        }
      } while (cursor !== '0');
      if (out.length) this.opts.log.info({ active: out.length }, 'active alerts restored from Redis');
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message }, 'could not read active alerts from Redis');
      return null;
    }
    return out;
  }

  /** The effective rules changed (start-up, metadata reload). */
  setRules(rules: readonly AlertRule[]): void {
    // every metadata load (cron, NOTIFY) passes the rules again: re-matching 100,000 series is
    // a noticeable pause, so an unchanged rule set is not applied again
    const key = JSON.stringify(rules);
    if (key === this.rulesKey) return;
    this.rulesKey = key;
    const events = this.evaluator.setRules(rules, Date.now());
    if (events.length) this.emit(events);
  }

  /**
   * After the first rules are set: the previous run's active alerts continue
   * (nothing raised again), the broker's retained state is rebuilt, and the
   * offline watch resumes. Starts the offline clock.
   */
  restore(): void {
    const r = this.restored;
    this.restored = null;
    if (r) {
      const now = Date.now();
      const orphans = this.evaluator.restore(r.active, now);
      this.evaluator.restoreSeen(r.seen, now);
      // the journal holds exactly what continues (alerts from Redis included), before any new event
      const continuing = this.evaluator.active();
      this.journal?.replaceWith(continuing);
      const active = continuing.map((a) => a.event);
      for (const e of active) this.index(e);
      this.mqtt.republish(active);
      // in a cluster the active hash is the source here, and is repaired only by a series' owner
      if (!this.cluster) this.redisOut?.reassert(active);
      if (orphans.length) this.emit(orphans);
      if (r.active.length)
        this.opts.log.info(
          { active: active.length, clearedOrphans: orphans.length },
          'active alerts restored',
        );
    }
    const jobs: Array<[string, number, () => unknown]> = [
      [
        'alerts-offline-tick',
        TICK_MS,
        () => {
          const events = this.evaluator.tick(Date.now());
          if (events.length) this.emit(events);
        },
      ],
      ['alerts-save-seen', SAVE_SEEN_MS, () => this.saveSeen()],
      // alerts:active:* rewritten from our state now and then: a FLUSHDB or an
      // evicted key heals within a minute (HSET of what is active: idempotent)
      [
        'alerts-redis-reassert',
        REASSERT_MS,
        () => {
          const cluster = this.cluster;
          this.redisOut?.reassert(cluster ? this.active().filter((e) => cluster.owns(e)) : this.active());
        },
      ],
    ];
    this.cluster?.start();
    const scheduler = this.opts.scheduler;
    for (const [name, ms, run] of jobs) {
      if (scheduler) scheduler.every(name, ms, run);
      else {
        const t = setInterval(run, ms);
        t.unref();
        this.timers.push(t);
      }
    }
  }

  attachBroker(aedes: Aedes): void {
    this.mqtt.attach(aedes);
  }

  /** mqtt.enabled: false: the embedded broker's output keeps nothing */
  noBroker(): void {
    this.mqtt.disable();
  }

  /** a further MQTT output (the upstream broker, src/upstream): every event from now on */
  addOutput(output: { deliver(events: readonly AlertEvent[]): void }): void {
    this.outputs.push(output);
  }

  /** before the broker closes: later events stay in the journal and are republished at next start */
  detachBroker(): void {
    this.mqtt.detach();
  }

  /**
   * Called by the ingress for every accepted batch of readings, before the
   * publisher is acknowledged; the events are in the journal when it returns.
   */
  evaluate(readings: readonly Reading[], receivedAtMs: number): void {
    let events: AlertEvent[] | null = null;
    const cluster = this.cluster;
    for (const r of readings) {
      // cluster: a series this node does not hold yet waits for its claim (never the publisher)
      if (cluster && this.evaluator.hasRulesFor(r.sensorType) && !cluster.admit(r, receivedAtMs)) continue;
      const e = this.evaluator.evaluate(r, receivedAtMs);
      if (e.length) {
        if (events) events.push(...e);
        else events = [...e];
      }
    }
    if (events) this.emit(events);
  }

  /** cluster: readings that waited for their series' claim, evaluated on the cluster's state */
  private evaluateNow(readings: ReadonlyArray<readonly [Reading, number]>): void {
    const events: AlertEvent[] = [];
    for (const [r, at] of readings) events.push(...this.evaluator.evaluate(r, at));
    if (events.length) this.emit(events);
  }

  /** cluster: one rule's episode as the cluster holds it; journaled, not delivered (it was, by its node) */
  private adopt(at: RuleAt, event: AlertEvent | null, keep?: (local: AlertEvent) => boolean): void {
    const field = alertField(at);
    const cur = this.activeIndex.get(at.building_id)?.get(field) ?? null;
    if (cur && keep?.(cur)) return;
    if (!this.evaluator.setActive(at, event)) return;
    const lines: ActiveAlert[] = [];
    if (cur) {
      this.activeIndex.get(at.building_id)?.delete(field);
      lines.push({ kind: alertKind(cur), event: { ...cur, state: 'cleared' } });
    }
    if (event) {
      this.index(event);
      lines.push({ kind: alertKind(event), event });
    }
    this.journal?.append(lines);
  }

  /** cluster: the clear of a raise that lost a race ends the episode that won it (if it is still ours) */
  private clearInstead(clear: AlertEvent, episode: AlertEvent): void {
    const cur = this.activeIndex.get(episode.building_id)?.get(alertField(episode));
    if (cur?.id !== episode.id) return;
    this.evaluator.setActive(episode, null);
    this.activeIndex.get(episode.building_id)?.delete(alertField(episode));
    this.emit([{ ...clear, id: episode.id, raised_at: episode.raised_at }]);
  }

  /** cluster: the series moved to another node; its episodes continue there */
  private forget(building: string, floor: string, room: string, sensorType: string): void {
    const dropped = this.evaluator.forget(building, floor, room, sensorType);
    if (!dropped.length) return;
    const m = this.activeIndex.get(building);
    for (const e of dropped) m?.delete(alertField(e));
    this.journal?.append(dropped.map((e) => ({ kind: alertKind(e), event: { ...e, state: 'cleared' } })));
  }

  /** journal first (synchronously), then delivery: a delivered event is always in the journal */
  private emit(events: AlertEvent[]): void {
    for (const e of events) {
      this.cluster?.tag(e);
      this.opts.metrics.alerts.inc({ state: e.state, severity: e.severity });
      if (e.state === 'raised') this.index(e);
      else this.activeIndex.get(e.building_id)?.delete(alertField(e));
    }
    const journal = this.journal;
    if (journal) {
      journal.append(events.map((event) => ({ kind: alertKind(event), event })));
      journal.compactIfLarge(() => this.evaluator.active());
    }
    // cluster: MQTT follows the gate's answer (AlertCluster.send), so a refused raise is never seen
    if (!this.cluster) this.mqtt.deliver(events);
    this.redisOut?.deliver(events);
    for (const o of this.outputs) o.deliver(events);
  }

  private index(e: AlertEvent): void {
    let m = this.activeIndex.get(e.building_id);
    if (!m) {
      m = new Map();
      this.activeIndex.set(e.building_id, m);
    }
    m.set(alertField(e), e);
  }

  /** Active alerts, newest first; optionally of one building (canonical key). */
  active(building?: string): AlertEvent[] {
    const lists = building ? [this.activeIndex.get(building)] : [...this.activeIndex.values()];
    const out: AlertEvent[] = [];
    for (const m of lists) if (m) out.push(...m.values());
    return out.sort((a, b) => (a.raised_at < b.raised_at ? 1 : a.raised_at > b.raised_at ? -1 : 0));
  }

  get activeCount(): number {
    let n = 0;
    for (const m of this.activeIndex.values()) n += m.size;
    return n;
  }

  get seriesCount(): number {
    return this.evaluator.seriesCount;
  }

  get redisQueued(): number {
    return this.redisOut?.queued ?? 0;
  }

  private async saveSeen(): Promise<void> {
    try {
      await this.journal?.saveSeen(this.evaluator.seenSeries());
    } catch (err) {
      this.opts.log.warn({ err }, 'could not save the offline watch list');
    }
  }

  async stop(deadline: number): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    for (const job of ['alerts-offline-tick', 'alerts-save-seen', 'alerts-redis-reassert'])
      this.opts.scheduler?.stop(job);
    this.mqtt.detach();
    await this.redisOut?.stop(deadline);
    this.cluster?.stop();
    await this.saveSeen();
    await this.journal?.close();
  }
}
