import { describe, expect, it } from 'vitest';
import { AlertEvaluator } from '../../src/alerts/evaluator.js';
import { parseRule } from '../../src/alerts/rules.js';
import { LatestReadings } from '../../src/latest/memory.js';
import { RollupAggregator } from '../../src/rollups/rollups.js';
import { aReading } from '../helpers/reading.js';

// Issue 11 item 9: series and active alerts are bounded; beyond the bounds new
// ones are refused (counted) and nothing already tracked is dropped.

const T0 = Date.parse('2026-01-01T00:00:00Z');

function rule(partial: Record<string, unknown>) {
  const r = parseRule({ id: 'r', sensor_type: 'power', ...partial }, 'test');
  if ('errors' in r) throw new Error(r.errors.join('; '));
  return r.rule;
}

describe('AlertEvaluator bounds', () => {
  it('tracks at most maxSeries series and raises at most maxActivePerBuilding alerts per building', () => {
    const refused: string[] = [];
    const ev = new AlertEvaluator({
      locale: 'en',
      maxSeries: 5,
      maxActivePerBuilding: 3,
      onRefused: (what, building) => refused.push(`${what}:${building}`),
    });
    ev.setRules([rule({ id: 'hot', above: 10 })], T0);
    const raised = [];
    for (let i = 0; i < 8; i++)
      raised.push(
        ...ev.evaluate(aReading({ room: `r${i}`, sensorType: 'power', value: 20, timestampMs: T0 }), T0),
      );
    expect(ev.seriesCount).toBe(5);
    expect(raised.map((e) => e.room)).toEqual(['r0', 'r1', 'r2']);
    expect(refused.filter((r) => r.startsWith('series')).length).toBe(3);
    expect(refused.filter((r) => r.startsWith('active')).length).toBe(2);
    expect(ev.active().length).toBe(3);
    // a clear frees a place: the next reading of a refused series raises it
    const cleared = ev.evaluate(
      aReading({ room: 'r0', sensorType: 'power', value: 1, timestampMs: T0 + 1000 }),
      T0,
    );
    expect(cleared.map((e) => e.state)).toEqual(['cleared']);
    const again = ev.evaluate(
      aReading({ room: 'r3', sensorType: 'power', value: 21, timestampMs: T0 + 1000 }),
      T0,
    );
    expect(again.map((e) => `${e.state}:${e.room}`)).toEqual(['raised:r3']);
  });

  it('refuses offline alerts beyond the bound and tries again after the series reports', () => {
    const refused: string[] = [];
    const ev = new AlertEvaluator({
      locale: 'en',
      maxActivePerBuilding: 2,
      onRefused: (w) => refused.push(w),
    });
    ev.setRules([rule({ id: 'off', offline_after_seconds: 1 })], T0);
    for (let i = 0; i < 4; i++)
      ev.evaluate(aReading({ room: `r${i}`, sensorType: 'power', timestampMs: T0 }), T0);
    expect(ev.tick(T0 + 2000).length).toBe(2);
    expect(refused).toEqual(['active', 'active']);
    expect(ev.tick(T0 + 4000).length).toBe(0); // not retried every tick
    expect(refused.length).toBe(2);
  });

  it('raises a refused offline alert once the building has room again, though the sensor stays silent', () => {
    // the refused series never report (they are offline): waiting for their next reading, as the
    // first version did, left them unraised for good (found in review)
    const ev = new AlertEvaluator({ locale: 'en', maxActivePerBuilding: 2 });
    ev.setRules([rule({ id: 'off', offline_after_seconds: 1 })], T0);
    for (let i = 0; i < 4; i++)
      ev.evaluate(aReading({ room: `r${i}`, sensorType: 'power', timestampMs: T0 }), T0);
    expect(ev.tick(T0 + 2000).map((e) => e.room)).toEqual(['r0', 'r1']);
    // r0 and r1 come back (cleared): room for two
    for (const room of ['r0', 'r1']) {
      const back = ev.evaluate(
        aReading({ room, sensorType: 'power', timestampMs: T0 + 61_000 }),
        T0 + 61_000,
      );
      expect(back.map((e) => e.state)).toEqual(['cleared']);
    }
    const later = ev.tick(T0 + 62_500).filter((e) => e.state === 'raised');
    expect(later.map((e) => e.room).sort()).toEqual(['r2', 'r3']);
  });

  it('restores every active alert of a previous run, even beyond the bounds', () => {
    const a = new AlertEvaluator({ locale: 'en', newId: () => 'x' });
    a.setRules([rule({ id: 'hot', above: 10 })], T0);
    for (let i = 0; i < 4; i++)
      a.evaluate(aReading({ room: `r${i}`, sensorType: 'power', value: 20, timestampMs: T0 }), T0);
    const b = new AlertEvaluator({ locale: 'en', maxSeries: 2, maxActivePerBuilding: 2 });
    b.setRules([rule({ id: 'hot', above: 10 })], T0);
    expect(b.restore(a.active(), T0)).toEqual([]);
    expect(b.active().length).toBe(4);
  });
});

describe('LatestReadings and RollupAggregator bounds', () => {
  it('latest readings: at most maxSeries entries, the rest counted', () => {
    let untracked = 0;
    const l = new LatestReadings({ maxSeries: 3, onUntracked: () => untracked++ });
    for (let i = 0; i < 5; i++) l.record([aReading({ sensorType: `t${i}`, timestampMs: T0 })], T0);
    const snap = l.snapshot();
    expect(Object.keys(snap.buildings[0]!.sensors).length).toBe(3);
    expect(untracked).toBe(2);
  });

  it('roll-ups: at most maxRows rows, existing rows still updated', () => {
    let untracked = 0;
    const agg = new RollupAggregator({ maxRows: 2, onUntracked: () => untracked++ });
    const add = (room: string, value: number) =>
      agg.add({ buildingId: 1, floor: 'F', room, sensorType: 'power', value, timestampMs: T0 });
    add('a', 1);
    add('b', 1);
    add('c', 1);
    add('a', 5);
    expect(agg.size).toBe(2);
    expect(untracked).toBe(1);
    expect(agg.take().rows.find((r) => r.room === 'a')).toMatchObject({ count: 2, max: 5 });
  });
});
