import { describe, expect, it } from 'vitest';
import { InvalidRowLog } from '../../src/alerts/rules.js';
import type { AlertRuleRow } from '../../src/metadata/snapshot.js';

const row = (over: Partial<AlertRuleRow>): AlertRuleRow =>
  ({
    id: 'r1',
    sensor_type: 'temperature',
    building_id: null,
    floor: null,
    room: null,
    above: null,
    below: null,
    hysteresis: 0,
    for_seconds: 0,
    offline_after_seconds: null,
    severity: 'warning',
    message: null,
    enabled: true,
    ...over,
  }) as AlertRuleRow;

describe('InvalidRowLog (issue 18 item 8)', () => {
  it('reports an invalid row once per change, forgets rows no longer invalid, and keeps valid rows', () => {
    const log = new InvalidRowLog();
    const reported: string[] = [];
    const merge = (rows: AlertRuleRow[]) => log.merge([], rows, (id) => reported.push(id));
    const bad = row({ id: 'bad' }); // no threshold, no offline_after_seconds
    const good = row({ id: 'good', above: 30 });
    for (let i = 0; i < 5; i++) expect(merge([bad, good]).map((r) => r.id)).toEqual(['good']);
    expect(reported).toEqual(['bad']);
    merge([row({ id: 'bad', severity: 'critical' }), good]);
    expect(reported).toEqual(['bad', 'bad']);
    merge([good]); // fixed or deleted: forgotten
    merge([row({ id: 'bad', severity: 'critical' }), good]);
    expect(reported).toEqual(['bad', 'bad', 'bad']);
  });
});
