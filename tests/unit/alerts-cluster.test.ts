import { describe, expect, it } from 'vitest';
import { seriesKey } from '../../src/alerts/clusterState.js';
import { AlertEvaluator, type AlertEvent } from '../../src/alerts/evaluator.js';
import { type AlertRule, parseRule } from '../../src/alerts/rules.js';
import type { Reading } from '../../src/ingest/reading.js';
import { aReading } from '../helpers/reading.js';

// The evaluator's side of alerts in a cluster: an episode taken over from
// another node continues with its id, a dropped one is not cleared, and a
// series that moved away leaves the offline watch.

function rule(partial: Record<string, unknown>): AlertRule {
  const r = parseRule({ sensor_type: 'power', ...partial }, 'test');
  if ('errors' in r) throw new Error(r.errors.join('; '));
  return r.rule;
}

const T0 = Date.parse('2026-01-01T00:00:00Z');
const reading = (value: number, tsS: number, over: Partial<Reading> = {}): Reading =>
  aReading({
    floor: '1F',
    room: 'r1',
    sensorType: 'power',
    unit: 'W',
    value,
    timestampMs: T0 + tsS * 1000,
    ...over,
  });

function evaluator() {
  let n = 0;
  const ev = new AlertEvaluator({ locale: 'en', newId: () => `local${++n}` });
  ev.setRules(
    [rule({ id: 'warn', above: 5000, hysteresis: 500 }), rule({ id: 'silent', offline_after_seconds: 2 })],
    T0,
  );
  return ev;
}

const remote: AlertEvent = {
  id: 'remote-1',
  type: 'energy_alert',
  state: 'raised',
  rule_id: 'warn',
  severity: 'warning',
  building_id: 'building_001',
  floor: '1F',
  room: 'r1',
  sensor_type: 'power',
  value: 6000,
  threshold: 5000,
  unit: 'W',
  message: 'm',
  timestamp: new Date(T0).toISOString(),
  raised_at: new Date(T0).toISOString(),
  cleared_at: null,
};

const short = (events: readonly AlertEvent[]) => events.map((e) => `${e.state}:${e.rule_id}:${e.id}`);

describe('evaluator state set by the cluster', () => {
  it('an episode raised on another node continues here: no second raise, cleared with its id', () => {
    const ev = evaluator();
    expect(ev.ruleIds(reading(0, 0))).toEqual(['silent', 'warn']);
    expect(ev.setActive(remote, remote)).toBe(true);
    expect(ev.setActive(remote, remote)).toBe(false); // the same episode again: no change
    expect(short(ev.evaluate(reading(6500, 1), T0 + 1000))).toEqual([]);
    expect(short(ev.evaluate(reading(4800, 2), T0 + 2000))).toEqual([]); // inside the hysteresis band
    expect(short(ev.evaluate(reading(100, 3), T0 + 3000))).toEqual(['cleared:warn:remote-1']);
  });

  it('a reading older than the adopted episode changes nothing', () => {
    const ev = evaluator();
    ev.ruleIds(reading(0, 0));
    ev.setActive(remote, { ...remote, timestamp: new Date(T0 + 10_000).toISOString() });
    expect(short(ev.evaluate(reading(100, 5), T0 + 5000))).toEqual([]);
    expect(ev.active().map((a) => a.event.id)).toEqual(['remote-1']);
  });

  it('an episode the cluster no longer holds is dropped without a clear; the next raise is a new episode', () => {
    const ev = evaluator();
    expect(short(ev.evaluate(reading(6000, 0), T0))).toEqual(['raised:warn:local1']);
    expect(ev.setActive(remote, null)).toBe(true);
    expect(ev.active()).toEqual([]);
    expect(short(ev.evaluate(reading(100, 1), T0 + 1000))).toEqual([]);
    expect(short(ev.evaluate(reading(7000, 2), T0 + 2000))).toEqual(['raised:warn:local2']);
  });

  it('an offline episode is not adopted by a threshold rule (the rule changed kind)', () => {
    const ev = evaluator();
    ev.ruleIds(reading(0, 0));
    expect(ev.setActive(remote, { ...remote, type: 'sensor_offline' })).toBe(false);
  });

  it('a series that moved away leaves the offline watch and its episodes, without events', () => {
    const ev = evaluator();
    expect(short(ev.evaluate(reading(6000, 0), T0))).toEqual(['raised:warn:local1']);
    ev.evaluate(reading(6000, 0, { room: 'r2' }), T0);
    ev.evaluate(reading(10, 1, { room: 'r2' }), T0); // r2 stays (its own episode raised and cleared)
    const dropped = ev.forget('building_001', '1F', 'r1', 'power');
    expect(dropped.map((e) => e.id)).toEqual(['local1']);
    expect(ev.seriesCount).toBe(1);
    // well past offline_after_seconds: only the series that stayed is reported
    const events = ev.tick(T0 + 10_000);
    expect(events.map((e) => `${e.type}:${e.room}`)).toEqual(['sensor_offline:r2']);
    expect(ev.forget('building_001', '1F', 'r1', 'power')).toEqual([]);
  });

  it('series keys name a series the way Redis keys do', () => {
    expect(seriesKey('building_001', '1F', 'r1', 'power')).toBe('building_001/1F/r1/power');
  });
});
