import { randomUUID } from 'node:crypto';
import type { Reading } from '../ingest/reading.js';
import { alertMessage, fillTemplate, type Locale, type MessageInput } from './messages.js';
import { type AlertRule, matchingRules } from './rules.js';

/** how soon an offline alert refused by alerts.maxActivePerBuilding is tried again */
const REFUSED_RETRY_MS = 60_000;

// The alert state machine (contract section 11). Pure and synchronous: it is
// fed accepted readings and clock ticks and returns events; persistence and
// delivery live elsewhere. Every decision is made on reading timestamps except
// offline detection, which is about silence and so runs on the wall clock.

export interface AlertEvent {
  readonly id: string;
  readonly type: 'energy_alert' | 'sensor_offline';
  readonly state: 'raised' | 'cleared';
  readonly rule_id: string;
  readonly severity: string;
  readonly building_id: string;
  readonly floor: string;
  readonly room: string;
  readonly sensor_type: string;
  readonly value: number | null;
  readonly threshold: number | null;
  readonly unit: string;
  readonly message: string;
  readonly timestamp: string;
  readonly raised_at: string;
  readonly cleared_at: string | null;
}

export type AlertKind = 'above' | 'below' | 'offline';

/** What the journal keeps per active episode. */
export interface ActiveAlert {
  readonly kind: AlertKind;
  readonly event: AlertEvent;
}

/** `{floor}/{room}/{sensor_type}/{rule_id}`: the hash field of alerts:active:{building_id} */
export function alertField(e: Pick<AlertEvent, 'floor' | 'room' | 'sensor_type' | 'rule_id'>): string {
  return `${e.floor}/${e.room}/${e.sensor_type}/${e.rule_id}`;
}

/** Which condition a raised event is about: an event carries its value and the threshold it crossed. */
export function alertKind(e: AlertEvent): AlertKind {
  if (e.type === 'sensor_offline') return 'offline';
  return (e.value ?? 0) > (e.threshold ?? 0) ? 'above' : 'below';
}

export function alertTopic(e: AlertEvent): string {
  return `alerts/${e.building_id}/${alertField(e)}`;
}

interface RuleState {
  rule: AlertRule;
  active: ActiveAlert | null;
  /** reading timestamp since which the raise condition has held (for_seconds) */
  pendingSince: number | null;
  pendingKind: AlertKind | null;
  /** wheel slot this state sits in, null when not scheduled (offline rules only) */
  slot: number | null;
  detached: boolean;
  readonly series: SeriesState;
}

interface SeriesState {
  readonly building: string;
  readonly buildingId: number;
  readonly floor: string;
  readonly room: string;
  readonly sensorType: string;
  /** newest reading timestamp evaluated: older and equal ones are not evaluated again */
  lastTs: number;
  /** wall-clock time of the last reading (offline detection) */
  lastSeenMs: number;
  lastValue: number | null;
  lastUnit: string;
  rules: RuleState[];
}

const NO_EVENTS: readonly AlertEvent[] = Object.freeze([]);

/** the hot path allocates an event list only when there is an event */
function add(list: AlertEvent[] | null, e: AlertEvent): AlertEvent[] {
  if (!list) return [e];
  list.push(e);
  return list;
}

export interface EvaluatorOptions {
  readonly locale: Locale;
  /** offline wheel resolution; offline alerts fire at most this late */
  readonly slotMs?: number;
  readonly newId?: () => string;
  /** series tracked at most; readings of further new series are not evaluated (counted) */
  readonly maxSeries?: number;
  /** active alerts per building at most; further raises are refused (counted) */
  readonly maxActivePerBuilding?: number;
  /** a new series beyond maxSeries, or a raise beyond maxActivePerBuilding (for metrics and logs) */
  readonly onRefused?: (what: 'series' | 'active', building: string) => void;
}

export class AlertEvaluator {
  private bySensorType = new Map<string, AlertRule[]>();
  private readonly series = new Map<string, SeriesState>();
  /** timer wheel: slot number → offline rule states due then; rescheduled lazily */
  private readonly wheel = new Map<number, RuleState[]>();
  private readonly slotMs: number;
  private readonly newId: () => string;
  private readonly maxSeries: number;
  private readonly maxActivePerBuilding: number;
  /** active alerts per building (the bound of maxActivePerBuilding) */
  private readonly activeByBuilding = new Map<string, number>();

  constructor(private readonly opts: EvaluatorOptions) {
    this.slotMs = opts.slotMs ?? 1000;
    this.newId = opts.newId ?? randomUUID;
    this.maxSeries = opts.maxSeries ?? Number.POSITIVE_INFINITY;
    this.maxActivePerBuilding = opts.maxActivePerBuilding ?? Number.POSITIVE_INFINITY;
  }

  /** series tracked now */
  get seriesCount(): number {
    return this.series.size;
  }

  private countActive(building: string, by: 1 | -1): void {
    const n = (this.activeByBuilding.get(building) ?? 0) + by;
    if (n > 0) this.activeByBuilding.set(building, n);
    else this.activeByBuilding.delete(building);
  }

  /** room for one more active alert in this building; counted when there is none */
  private mayRaise(building: string): boolean {
    if ((this.activeByBuilding.get(building) ?? 0) < this.maxActivePerBuilding) return true;
    this.opts.onRefused?.('active', building);
    return false;
  }

  /**
   * Swap the rule set. States of rules that stay (same id) are kept, so a
   * threshold edit does not re-raise; an active alert whose rule disappeared,
   * was disabled or changed kind is cleared, never left dangling.
   */
  setRules(rules: readonly AlertRule[], nowMs: number): AlertEvent[] {
    this.bySensorType = new Map();
    // id order gives a stable event order when one reading crosses several rules
    for (const r of [...rules].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))) {
      const list = this.bySensorType.get(r.sensorType);
      if (list) list.push(r);
      else this.bySensorType.set(r.sensorType, [r]);
    }
    const events: AlertEvent[] = [];
    for (const s of this.series.values()) {
      const old = new Map(s.rules.map((st) => [st.rule.id, st]));
      s.rules = this.statesFor(s, old);
      for (const st of old.values()) {
        st.detached = true;
        if (st.active) events.push(this.clear(st, s.lastValue, nowMs, 'rule'));
      }
    }
    return events;
  }

  private statesFor(s: SeriesState, old?: Map<string, RuleState>): RuleState[] {
    const candidates = this.bySensorType.get(s.sensorType);
    if (!candidates) return [];
    const out: RuleState[] = [];
    for (const rule of matchingRules(candidates, s.buildingId, s.floor, s.room, s.sensorType)) {
      const prev = old?.get(rule.id);
      const sameKind =
        prev && (prev.rule.offlineAfterSeconds === null) === (rule.offlineAfterSeconds === null);
      if (prev && sameKind) {
        old!.delete(rule.id);
        prev.rule = rule;
        out.push(prev);
        if (rule.offlineAfterSeconds !== null && prev.slot === null && s.lastSeenMs > 0) this.schedule(prev);
        continue;
      }
      const st: RuleState = {
        rule,
        active: null,
        pendingSince: null,
        pendingKind: null,
        slot: null,
        detached: false,
        series: s,
      };
      out.push(st);
      if (rule.offlineAfterSeconds !== null && s.lastSeenMs > 0) this.schedule(st);
    }
    return out;
  }

  /**
   * The state of one series, created on first sight; null beyond maxSeries
   * (counted), unless `force`: state from a previous run is never dropped.
   */
  private seriesFor(
    building: string,
    buildingId: number,
    floor: string,
    room: string,
    sensorType: string,
    force = false,
  ): SeriesState | null {
    const key = `${building}\n${floor}\n${room}\n${sensorType}`;
    let s = this.series.get(key);
    if (!s) {
      if (!force && this.series.size >= this.maxSeries) {
        this.opts.onRefused?.('series', building);
        return null;
      }
      s = {
        building,
        buildingId,
        floor,
        room,
        sensorType,
        lastTs: Number.NEGATIVE_INFINITY,
        lastSeenMs: 0,
        lastValue: null,
        lastUnit: '',
        rules: [],
      };
      s.rules = this.statesFor(s);
      this.series.set(key, s);
    }
    return s;
  }

  /**
   * One accepted reading. Readings are evaluated in timestamp order per
   * series: one not newer than the newest already seen (late, out of order,
   * or a resend of the same reading) is stored but changes no alert, except
   * that it proves an offline sensor is alive.
   */
  evaluate(r: Reading, receivedAtMs: number): readonly AlertEvent[] {
    if (!this.bySensorType.has(r.sensorType)) return NO_EVENTS;
    const s = this.seriesFor(r.building, r.buildingId, r.floor, r.room, r.sensorType);
    if (!s || s.rules.length === 0) return NO_EVENTS;
    let events: AlertEvent[] | null = null;
    s.lastSeenMs = receivedAtMs;
    const inOrder = r.timestampMs > s.lastTs;
    if (inOrder) {
      s.lastTs = r.timestampMs;
      s.lastValue = r.value;
      s.lastUnit = r.unit;
    }
    for (const st of s.rules) {
      const rule = st.rule;
      if (rule.offlineAfterSeconds !== null) {
        if (st.active) {
          events = add(events, this.clear(st, this.silentS(st.active, receivedAtMs), receivedAtMs));
        }
        if (st.slot === null) this.schedule(st);
        continue;
      }
      if (!inOrder) continue;
      const v = r.value;
      const active = st.active;
      if (active) {
        const cleared =
          active.kind === 'above' ? v <= rule.above! - rule.hysteresis : v >= rule.below! + rule.hysteresis;
        if (!cleared) continue;
        events = add(events, this.clear(st, v, r.timestampMs));
      }
      // not (or no longer) active: does this reading start or continue an episode?
      const kind: AlertKind | null =
        rule.above !== null && v > rule.above
          ? 'above'
          : rule.below !== null && v < rule.below
            ? 'below'
            : null;
      if (kind === null) {
        st.pendingSince = null;
        st.pendingKind = null;
        continue;
      }
      if (st.pendingKind !== kind) {
        st.pendingKind = kind;
        st.pendingSince = r.timestampMs;
      }
      if (r.timestampMs - st.pendingSince! >= rule.forSeconds * 1000) {
        // beyond the building's bound the episode is not raised; the next reading tries again
        if (!this.mayRaise(s.building)) continue;
        st.pendingSince = null;
        st.pendingKind = null;
        events = add(events, this.raiseEvent(st, kind, v, r.unit, r.timestampMs));
      }
    }
    return events ?? NO_EVENTS;
  }

  private silentS(active: ActiveAlert, nowMs: number): number {
    return Math.round((nowMs - Date.parse(active.event.raised_at)) / 1000) + (active.event.value ?? 0);
  }

  private schedule(st: RuleState, notBeforeMs = 0): void {
    const due = Math.max(st.series.lastSeenMs + st.rule.offlineAfterSeconds! * 1000, notBeforeMs);
    const slot = Math.ceil(due / this.slotMs);
    st.slot = slot;
    const list = this.wheel.get(slot);
    if (list) list.push(st);
    else this.wheel.set(slot, [st]);
  }

  /**
   * Advance the offline wheel to `nowMs`. A state is rescheduled when its
   * series reported since it was queued, so a reading costs one field update
   * and each series is touched about once per offline_after_seconds.
   */
  tick(nowMs: number): AlertEvent[] {
    const nowSlot = Math.floor(nowMs / this.slotMs);
    const events: AlertEvent[] = [];
    // the wheel holds one entry per occupied slot (at most offline_after / slotMs of them)
    for (const [slot, list] of this.wheel) {
      if (slot > nowSlot) continue;
      this.wheel.delete(slot);
      for (const st of list) {
        if (st.detached || st.slot !== slot) continue;
        st.slot = null;
        if (st.series.lastSeenMs + st.rule.offlineAfterSeconds! * 1000 > nowMs) this.schedule(st);
        else if (!st.active) {
          if (this.mayRaise(st.series.building)) events.push(this.raiseOffline(st, nowMs));
          // refused beyond the building's bound: tried again a minute later (an offline sensor
          // sends no reading that would), so it is raised once the building has room again
          else this.schedule(st, nowMs + REFUSED_RETRY_MS);
        }
      }
    }
    return events;
  }

  private messageInput(
    st: RuleState,
    value: number | null,
    threshold: number | null,
    unit: string,
  ): MessageInput {
    const s = st.series;
    return {
      sensorType: s.sensorType,
      value,
      threshold,
      unit,
      floor: s.floor,
      room: s.room,
      building: s.building,
    };
  }

  private raiseEvent(st: RuleState, kind: 'above' | 'below', value: number, unit: string, tsMs: number) {
    const rule = st.rule;
    const threshold = kind === 'above' ? rule.above! : rule.below!;
    const m = this.messageInput(st, value, threshold, unit);
    const at = new Date(tsMs).toISOString();
    const event = this.event(
      st,
      'energy_alert',
      value,
      threshold,
      unit,
      at,
      rule.message ? fillTemplate(rule.message, m) : alertMessage(this.opts.locale, kind, m),
    );
    st.active = { kind, event };
    this.countActive(st.series.building, 1);
    return event;
  }

  private raiseOffline(st: RuleState, nowMs: number): AlertEvent {
    const rule = st.rule;
    const silent = Math.round((nowMs - st.series.lastSeenMs) / 1000);
    const m = this.messageInput(st, silent, rule.offlineAfterSeconds, 's');
    const at = new Date(nowMs).toISOString();
    const message = rule.message
      ? fillTemplate(rule.message, m)
      : alertMessage(this.opts.locale, 'offline', m);
    const event = this.event(st, 'sensor_offline', silent, rule.offlineAfterSeconds, 's', at, message);
    st.active = { kind: 'offline', event };
    this.countActive(st.series.building, 1);
    return event;
  }

  private event(
    st: RuleState,
    type: AlertEvent['type'],
    value: number | null,
    threshold: number | null,
    unit: string,
    at: string,
    message: string,
  ): AlertEvent {
    const s = st.series;
    return {
      id: this.newId(),
      type,
      state: 'raised',
      rule_id: st.rule.id,
      severity: st.rule.severity,
      building_id: s.building,
      floor: s.floor,
      room: s.room,
      sensor_type: s.sensorType,
      value,
      threshold,
      unit,
      message,
      timestamp: at,
      raised_at: at,
      cleared_at: null,
    };
  }

  /** The cleared twin of an active episode: same id, the clearing value and time. */
  private clearEvent(
    s: SeriesState,
    active: ActiveAlert,
    value: number | null,
    atMs: number,
    why: 'value' | 'rule' = 'value',
  ): AlertEvent {
    const raised = active.event;
    const at = new Date(atMs).toISOString();
    const offline = active.kind === 'offline';
    const unit = offline ? 's' : why === 'rule' ? raised.unit : s.lastUnit || raised.unit;
    const m: MessageInput = {
      sensorType: s.sensorType,
      value,
      threshold: raised.threshold,
      unit,
      floor: s.floor,
      room: s.room,
      building: s.building,
    };
    return {
      ...raised,
      state: 'cleared',
      value,
      unit,
      message: alertMessage(this.opts.locale, offline ? 'online' : 'cleared', m),
      timestamp: at,
      cleared_at: at,
    };
  }

  private clear(st: RuleState, value: number | null, atMs: number, why: 'value' | 'rule' = 'value') {
    const active = st.active!;
    st.active = null;
    this.countActive(st.series.building, -1);
    return this.clearEvent(st.series, active, value, atMs, why);
  }

  /**
   * Active alerts from a previous run. Each becomes the state of its rule
   * again, so the episode continues with its id and is not raised twice; one
   * whose rule is gone is cleared at once.
   */
  restore(actives: readonly ActiveAlert[], nowMs: number): AlertEvent[] {
    const events: AlertEvent[] = [];
    for (const a of actives) {
      const e = a.event;
      const buildingId = Number(/(\d+)$/.exec(e.building_id)?.[1] ?? Number.NaN);
      const s = this.seriesFor(e.building_id, buildingId, e.floor, e.room, e.sensor_type, true)!;
      const st = s.rules.find((x) => x.rule.id === e.rule_id);
      const kindFits = st && (a.kind === 'offline') === (st.rule.offlineAfterSeconds !== null);
      if (!st || !kindFits) {
        events.push(this.clearEvent(s, a, e.value, nowMs, 'rule'));
        continue;
      }
      if (!st.active) this.countActive(s.building, 1);
      st.active = a;
      // the reading that raised a threshold episode is the newest this series has shown (an offline
      // event's time is the daemon's clock, not a reading's: it must not hide later readings)
      if (a.kind !== 'offline') s.lastTs = Math.max(s.lastTs, Date.parse(e.timestamp));
    }
    return events;
  }

  /**
   * Series that have reported and carry offline rules, so that a sensor that
   * died around a restart is still noticed. Silence is counted from `nowMs`
   * (the restart), not from before it: the daemon was not listening then.
   */
  restoreSeen(
    series: ReadonlyArray<{ building: string; floor: string; room: string; sensorType: string }>,
    nowMs: number,
  ): void {
    for (const x of series) {
      const buildingId = Number(/(\d+)$/.exec(x.building)?.[1] ?? Number.NaN);
      const s = this.seriesFor(x.building, buildingId, x.floor, x.room, x.sensorType, true)!;
      if (s.lastSeenMs > 0) continue;
      s.lastSeenMs = nowMs;
      for (const st of s.rules)
        if (st.rule.offlineAfterSeconds !== null && st.slot === null) this.schedule(st);
    }
  }

  /** Series watched for silence (for the state file). */
  seenSeries(): Array<{ building: string; floor: string; room: string; sensorType: string }> {
    const out = [];
    for (const s of this.series.values()) {
      if (s.lastSeenMs > 0 && s.rules.some((st) => st.rule.offlineAfterSeconds !== null)) {
        out.push({ building: s.building, floor: s.floor, room: s.room, sensorType: s.sensorType });
      }
    }
    return out;
  }

  // ---- cluster mode (src/alerts/clusterState.ts): the cluster's state replaces this node's, no events ----

  /** whether any rule watches this sensor type (the cheap test before a series is claimed) */
  hasRulesFor(sensorType: string): boolean {
    return this.bySensorType.has(sensorType);
  }

  /** The ids of the rules that apply to a reading's series (its state is created; none beyond maxSeries). */
  ruleIds(r: Pick<Reading, 'building' | 'buildingId' | 'floor' | 'room' | 'sensorType'>): string[] {
    const s = this.seriesFor(r.building, r.buildingId, r.floor, r.room, r.sensorType);
    return s ? s.rules.map((st) => st.rule.id) : [];
  }

  /**
   * Set one rule's episode of a series to what the cluster holds: `event` (a
   * raised event) continues with its id, null means no episode. No event is
   * returned: the cluster already delivered them. Answers whether the state
   * changed (false also when the series or rule is unknown here).
   */
  setActive(
    at: Pick<AlertEvent, 'building_id' | 'floor' | 'room' | 'sensor_type' | 'rule_id'>,
    event: AlertEvent | null,
  ): boolean {
    const key = `${at.building_id}\n${at.floor}\n${at.room}\n${at.sensor_type}`;
    let s = this.series.get(key);
    if (!s && event) {
      const buildingId = Number(/(\d+)$/.exec(at.building_id)?.[1] ?? Number.NaN);
      s = this.seriesFor(at.building_id, buildingId, at.floor, at.room, at.sensor_type, true)!;
    }
    const st = s?.rules.find((x) => x.rule.id === at.rule_id);
    if (!s || !st) return false;
    const before = st.active;
    if ((before?.event.id ?? null) === (event?.id ?? null)) return false;
    if (event) {
      const kind = alertKind(event);
      // an episode of a rule of another kind (the rule changed meanwhile) is not adopted
      if ((kind === 'offline') !== (st.rule.offlineAfterSeconds !== null)) return false;
      if (!before) this.countActive(s.building, 1);
      st.active = { kind, event };
      st.pendingSince = null;
      st.pendingKind = null;
      if (kind !== 'offline') s.lastTs = Math.max(s.lastTs, Date.parse(event.timestamp));
    } else {
      if (before) this.countActive(s.building, -1);
      st.active = null;
    }
    return true;
  }

  /**
   * The series moved to another node: its state is dropped without events
   * (its episodes continue there), and it leaves the offline watch. Answers
   * the active events it held.
   */
  forget(building: string, floor: string, room: string, sensorType: string): AlertEvent[] {
    const key = `${building}\n${floor}\n${room}\n${sensorType}`;
    const s = this.series.get(key);
    if (!s) return [];
    this.series.delete(key);
    const dropped: AlertEvent[] = [];
    for (const st of s.rules) {
      st.detached = true; // the wheel skips it
      if (st.active) {
        dropped.push(st.active.event);
        this.countActive(s.building, -1);
        st.active = null;
      }
    }
    return dropped;
  }

  active(): ActiveAlert[] {
    const out: ActiveAlert[] = [];
    for (const s of this.series.values()) for (const st of s.rules) if (st.active) out.push(st.active);
    return out;
  }
}
