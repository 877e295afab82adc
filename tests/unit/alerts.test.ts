import { describe, expect, it } from 'vitest';
import { AlertEvaluator, type AlertEvent, alertField, alertTopic } from '../../src/alerts/evaluator.js';
import { alertMessage, fillTemplate } from '../../src/alerts/messages.js';
import { type AlertRule, mergeRules, parseConfigRules, parseRule } from '../../src/alerts/rules.js';
import type { Reading } from '../../src/ingest/reading.js';
import type { AlertRuleRow } from '../../src/metadata/snapshot.js';
import { aReading } from '../helpers/reading.js';

function rule(partial: Record<string, unknown>): AlertRule {
  const r = parseRule({ id: 'r', sensor_type: 'power', ...partial }, 'test');
  if ('errors' in r) throw new Error(r.errors.join('; '));
  return r.rule;
}

const T0 = Date.parse('2026-01-01T00:00:00Z');
function reading(value: number, tsS: number, over: Partial<Reading> = {}): Reading {
  return aReading({
    floor: '3F',
    room: 'A',
    sensorType: 'power',
    unit: 'W',
    value,
    timestampMs: T0 + tsS * 1000,
    ...over,
  });
}

function evaluator(rules: AlertRule[], locale: 'ko' | 'en' = 'en') {
  let n = 0;
  const ev = new AlertEvaluator({ locale, newId: () => `id${++n}` });
  ev.setRules(rules, T0);
  return ev;
}

/** values at one-second steps → compact "raised:ruleId" list */
function run(ev: AlertEvaluator, values: number[], startS = 0): string[] {
  const out: string[] = [];
  values.forEach((v, i) => {
    for (const e of ev.evaluate(reading(v, startS + i), T0 + (startS + i) * 1000))
      out.push(`${e.state}:${e.rule_id}@${v}`);
  });
  return out;
}

describe('rule validation', () => {
  it('names the problem and the field', () => {
    const errors: string[] = [];
    parseConfigRules(
      [
        { id: 'a', sensorType: 'power' },
        { id: 'b', sensorType: 'power', above: 1, hysteresis: -1 },
        { id: 'c', sensor_type: 'power', above: 'x' },
        { id: 'd', sensorType: 'power', above: 10, offlineAfterSeconds: 60 },
        { id: 'e', sensorType: 'power', above: 10, below: 9, hysteresis: 2 },
        { id: 'f', sensorType: 'power', above: 1, colour: 'red' },
        { id: 'g', sensorType: 'power', above: 1 },
        { id: 'g', sensorType: 'power', above: 2 },
      ],
      errors,
    );
    expect(errors).toEqual([
      'alerts.rules[0]: needs above, below or offline_after_seconds (a rule with none can never raise)',
      'alerts.rules[1].hysteresis: must not be below 0 (got -1)',
      'alerts.rules[2].above: must be a finite number',
      expect.stringContaining('alerts.rules[3]: a rule is either a threshold rule'),
      'alerts.rules[4]: below (9) must not exceed above − hysteresis (8)',
      'alerts.rules[5].colour: unknown key',
      'alerts.rules[7].id: duplicate id "g"',
    ]);
  });

  it('a rule id must be one safe MQTT topic level (issue 18 item 7)', () => {
    const errors: string[] = [];
    const bad = ['a/#', '+', '#', 'a/b', 'x/y/z/w', 'bell\u0007', 'nl\n', 'sp ace', 'ü', '', 'k'.repeat(65)];
    const ok = ['power-warn', 'A_1.b:c', 'k'.repeat(64)];
    const rules = parseConfigRules(
      [...bad, ...ok].map((id) => ({ id, sensor_type: 'power', above: 1 })),
      errors,
    );
    expect(rules.map((r) => r.id)).toEqual(ok);
    expect(errors).toHaveLength(bad.length);
    bad.forEach((id, i) => {
      expect(errors[i]).toContain(`alerts.rules[${i}].id`);
      expect(errors[i]).toContain(JSON.stringify(id));
      expect(errors[i]).toContain('A-Z a-z 0-9 _ . : -');
    });
    // a table row with such an id is skipped and reported, the others apply
    const reported: [string, string[]][] = [];
    const merged = mergeRules(
      [],
      [
        { id: 'a/#', sensor_type: 'power', above: 1 } as unknown as AlertRuleRow,
        { id: 'fine', sensor_type: 'power', above: 1 } as unknown as AlertRuleRow,
      ],
      (id, problems) => reported.push([id, problems]),
    );
    expect(merged.map((r) => r.id)).toEqual(['fine']);
    expect(reported).toEqual([['a/#', [expect.stringContaining('alert_rules[id=a/#].id: "a/#"')]]]);
  });

  it('accepts camelCase and snake_case and defaults the rest', () => {
    const r = rule({ forSeconds: 30, offline_after_seconds: undefined, above: '5000' });
    expect(r).toMatchObject({
      above: 5000,
      below: null,
      hysteresis: 0,
      forSeconds: 30,
      severity: 'warning',
      enabled: true,
    });
  });

  it('a table row wins over a config rule with the same id; a bad row is skipped and reported', () => {
    const row = (over: Partial<AlertRuleRow>): AlertRuleRow => ({
      id: 'x',
      sensor_type: 'power',
      building_id: null,
      floor: null,
      room: null,
      above: 10,
      below: null,
      hysteresis: 0,
      for_seconds: 0,
      offline_after_seconds: null,
      severity: 'critical',
      message: null,
      enabled: true,
      ...over,
    });
    const bad: string[] = [];
    const merged = mergeRules(
      [rule({ id: 'x', above: 1 }), rule({ id: 'y', above: 2 }), rule({ id: 'z', above: 3 })],
      [row({}), row({ id: 'y', above: null }), row({ id: 'w', enabled: false })],
      (id) => bad.push(id),
    );
    expect(merged.map((r) => [r.id, r.above, r.severity])).toEqual([
      ['x', 10, 'critical'],
      ['z', 3, 'warning'],
    ]);
    expect(bad).toEqual(['y']);
  });
});

describe('threshold alerts', () => {
  it('above with hysteresis: raise strictly above, clear at or below threshold − hysteresis', () => {
    const ev = evaluator([rule({ id: 'hi', above: 100, hysteresis: 5 })]);
    expect(run(ev, [100, 100.01, 150, 95.01, 99, 101, 95, 96, 100, 100.5])).toEqual([
      'raised:hi@100.01',
      'cleared:hi@95',
      'raised:hi@100.5',
    ]);
  });

  it('below with hysteresis: raise strictly below, clear at or above threshold + hysteresis', () => {
    const ev = evaluator([rule({ id: 'lo', sensor_type: 'power', below: 10, hysteresis: 2 })]);
    expect(run(ev, [10, 9.99, 5, 11.99, 12, 11, 9])).toEqual([
      'raised:lo@9.99',
      'cleared:lo@12',
      'raised:lo@9',
    ]);
  });

  it('a band rule crossing from above straight to below clears before it raises', () => {
    const ev = evaluator([rule({ id: 'band', above: 100, below: 10, hysteresis: 5 })]);
    expect(run(ev, [150, 5, 50])).toEqual([
      'raised:band@150',
      'cleared:band@5',
      'raised:band@5',
      'cleared:band@50',
    ]);
  });

  it('for_seconds: the condition must hold continuously by reading timestamps', () => {
    const ev = evaluator([rule({ id: 'sustained', above: 100, forSeconds: 3 })]);
    // dips at t=2 restart the clock; holds from t=3 to t=6
    expect(run(ev, [150, 150, 90, 150, 150, 150, 150, 150])).toEqual(['raised:sustained@150']);
    const events = ev.active();
    expect(events[0]!.event.raised_at).toBe(new Date(T0 + 6000).toISOString());
  });

  it('readings not newer than the newest seen are not evaluated (late, out of order, resent)', () => {
    const ev = evaluator([rule({ id: 'hi', above: 100 })]);
    expect(run(ev, [50], 10)).toEqual([]);
    // a late reading over the threshold changes nothing
    expect(ev.evaluate(reading(500, 5), T0 + 11_000)).toEqual([]);
    expect(run(ev, [150], 11)).toEqual(['raised:hi@150']);
    // the same reading again (a QoS 1 resend) raises nothing
    expect(ev.evaluate(reading(150, 11), T0 + 12_000)).toEqual([]);
    expect(ev.evaluate(reading(10, 11), T0 + 12_000)).toEqual([]);
  });

  it('escalation raises the critical rule while the warning stays; de-escalation clears it', () => {
    const ev = evaluator([
      rule({ id: 'warn', above: 80, severity: 'warning' }),
      rule({ id: 'crit', above: 100, severity: 'critical' }),
    ]);
    expect(run(ev, [85, 90, 120, 130, 95, 70])).toEqual([
      'raised:warn@85',
      'raised:crit@120',
      'cleared:crit@95',
      'cleared:warn@70',
    ]);
  });

  it('one pair per episode with a shared id and the contract fields', () => {
    const ev = evaluator([rule({ id: 'hi', above: 100, severity: 'critical' })], 'ko');
    const [raised] = ev.evaluate(reading(120, 1), T0 + 1000);
    expect(ev.evaluate(reading(130, 2), T0 + 2000)).toEqual([]);
    const [cleared] = ev.evaluate(reading(80, 3), T0 + 3000);
    expect(raised).toEqual({
      id: 'id1',
      type: 'energy_alert',
      state: 'raised',
      rule_id: 'hi',
      severity: 'critical',
      building_id: 'building_001',
      floor: '3F',
      room: 'A',
      sensor_type: 'power',
      value: 120,
      threshold: 100,
      unit: 'W',
      message: '전력 사용량이 임계치를 초과했습니다 (현재 120 W, 임계치 100 W)',
      timestamp: '2026-01-01T00:00:01.000Z',
      raised_at: '2026-01-01T00:00:01.000Z',
      cleared_at: null,
    } satisfies AlertEvent);
    expect(cleared).toMatchObject({
      id: 'id1',
      state: 'cleared',
      value: 80,
      raised_at: '2026-01-01T00:00:01.000Z',
      cleared_at: '2026-01-01T00:00:03.000Z',
      message: '전력 사용량이 정상 범위로 돌아왔습니다 (현재 80 W)',
    });
    expect(alertTopic(raised!)).toBe('alerts/building_001/3F/A/power/hi');
    expect(alertField(raised!)).toBe('3F/A/power/hi');
  });

  it('scopes rules by building, floor and room', () => {
    const ev = evaluator([
      rule({ id: 'b2', above: 1, building_id: 2 }),
      rule({ id: 'room', above: 1, floor: '3F', room: 'B' }),
      rule({ id: 'all', above: 1 }),
    ]);
    expect(run(ev, [5])).toEqual(['raised:all@5']);
    const other = ev.evaluate(reading(5, 1, { buildingId: 2, building: 'building_002', room: 'B' }), T0);
    expect(other.map((e) => e.rule_id)).toEqual(['all', 'b2', 'room']);
  });

  it('a rule that disappears clears its active alert; an edited one keeps the episode', () => {
    const ev = evaluator([rule({ id: 'hi', above: 100 }), rule({ id: 'gone', above: 50 })]);
    run(ev, [120]);
    const events = ev.setRules([rule({ id: 'hi', above: 110 })], T0 + 5000);
    expect(events.map((e) => `${e.state}:${e.rule_id}`)).toEqual(['cleared:gone']);
    expect(run(ev, [115], 1)).toEqual([]);
    expect(run(ev, [105], 2)).toEqual(['cleared:hi@105']);
  });

  it('restored active alerts continue their episode; one without a rule is cleared', () => {
    const ev = evaluator([rule({ id: 'hi', above: 100 })]);
    run(ev, [120]);
    const saved = ev.active();
    const next = evaluator([rule({ id: 'hi', above: 100 })]);
    const orphan = { kind: 'above' as const, event: { ...saved[0]!.event, rule_id: 'removed' } };
    const cleared = next.restore([...saved, orphan], T0 + 10_000);
    expect(cleared.map((e) => `${e.state}:${e.rule_id}`)).toEqual(['cleared:removed']);
    expect(run(next, [130], 1)).toEqual([]);
    const [c] = next.evaluate(reading(10, 2), T0 + 2000);
    expect(c).toMatchObject({ state: 'cleared', id: saved[0]!.event.id });
  });
});

describe('offline detection', () => {
  it('raises once after the silence and clears on the next reading', () => {
    const ev = evaluator([rule({ id: 'off', offline_after_seconds: 60 })]);
    ev.evaluate(reading(1, 0), T0);
    expect(ev.tick(T0 + 59_000)).toEqual([]);
    ev.evaluate(reading(1, 30), T0 + 30_000); // reported again: the deadline moves
    expect(ev.tick(T0 + 61_000)).toEqual([]);
    const [raised] = ev.tick(T0 + 91_000);
    expect(raised).toMatchObject({
      type: 'sensor_offline',
      state: 'raised',
      value: 61,
      threshold: 60,
      unit: 's',
    });
    expect(ev.tick(T0 + 200_000)).toEqual([]);
    const [cleared] = ev.evaluate(reading(1, 300), T0 + 300_000);
    expect(cleared).toMatchObject({ type: 'sensor_offline', state: 'cleared', id: raised!.id, value: 270 });
    expect(ev.tick(T0 + 359_000)).toEqual([]);
    expect(ev.tick(T0 + 361_000)).toHaveLength(1);
  });

  it('a series that never reported is never offline; a restart counts silence from the restart', () => {
    const ev = evaluator([rule({ id: 'off', offline_after_seconds: 10 })]);
    expect(ev.tick(T0 + 1e6)).toEqual([]);
    ev.restoreSeen([{ building: 'building_001', floor: '3F', room: 'A', sensorType: 'power' }], T0 + 2e6);
    expect(ev.tick(T0 + 2e6 + 9000)).toEqual([]);
    expect(ev.tick(T0 + 2e6 + 10_000)).toHaveLength(1);
    expect(ev.seenSeries()).toHaveLength(1);
  });

  // Its cost is measured by the bench (alert evaluation row), not timed here: a loaded CI machine
  // took 13 s for what takes 0.3 s alone.
  it('100,000 series: ticks before the deadline raise nothing, the due tick raises every one once', () => {
    const ev = evaluator([rule({ id: 'off', offline_after_seconds: 60 })]);
    for (let i = 0; i < 100_000; i++) ev.evaluate(reading(1, 0, { room: `r${i}` }), T0);
    for (let s = 1; s <= 59; s++) expect(ev.tick(T0 + s * 1000)).toEqual([]);
    expect(ev.tick(T0 + 60_000)).toHaveLength(100_000);
    expect(ev.tick(T0 + 61_000)).toEqual([]);
  });
});

describe('messages', () => {
  it('Korean by default with the right particle, English available, rule templates filled', () => {
    const m = {
      sensorType: 'temperature',
      value: 31.5,
      threshold: 30,
      unit: 'celsius',
      floor: '3F',
      room: 'A',
      building: 'building_001',
    };
    expect(alertMessage('ko', 'above', m)).toBe(
      '온도가 임계치를 초과했습니다 (현재 31.5 celsius, 임계치 30 celsius)',
    );
    expect(alertMessage('ko', 'below', { ...m, sensorType: 'co2' })).toContain('CO2 농도가 임계치 미만으로');
    expect(alertMessage('en', 'above', m)).toBe(
      'Temperature exceeded the threshold (now 31.5 celsius, threshold 30 celsius)',
    );
    expect(alertMessage('ko', 'offline', { ...m, threshold: 60 })).toContain('60초 동안');
    expect(alertMessage('en', 'cleared', { ...m, sensorType: 'vibration' })).toBe(
      'vibration reading is back to normal (now 31.5 celsius)',
    );
    expect(fillTemplate('{room} {value}{unit} > {threshold} {nope}', m)).toBe('A 31.5celsius > 30 {nope}');
    // names of Object.prototype's members are unknown placeholders too
    const internals = '{constructor} {to_string} {__proto__} {toString} {hasOwnProperty} {valueOf}';
    expect(fillTemplate(internals, m)).toBe(internals);
    // only the documented placeholders expand (issue 18 item 12)
    expect(
      fillTemplate('{value}|{threshold}|{unit}|{sensor_type}|{floor}|{room}|{building_id}|{building}', m),
    ).toBe('31.5|30|celsius|temperature|3F|A|building_001|{building}');
  });
});
