import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { ActiveAlert, AlertEvent } from '../../src/alerts/evaluator.js';
import { AlertJournal } from '../../src/alerts/journal.js';
import { tempDir } from '../helpers/services.js';

const log = pino({ level: 'silent' });

function alert(id: string, rule: string, state: 'raised' | 'cleared' = 'raised'): ActiveAlert {
  const event: AlertEvent = {
    id,
    type: 'energy_alert',
    state,
    rule_id: rule,
    severity: 'warning',
    building_id: 'building_001',
    floor: '1F',
    room: 'a',
    sensor_type: 'power',
    value: 10,
    threshold: 5,
    unit: 'W',
    message: 'm',
    timestamp: '2026-01-01T00:00:00.000Z',
    raised_at: '2026-01-01T00:00:00.000Z',
    cleared_at: state === 'cleared' ? '2026-01-01T00:00:01.000Z' : null,
  };
  return { kind: 'above', event };
}

describe('alert journal', () => {
  it('folds raised/cleared pairs back into the active set, ignoring a torn last line', async () => {
    const dataDir = tempDir('journal');
    const first = await AlertJournal.open({ dataDir, sync: true, log });
    expect(first.existed).toBe(false);
    first.journal.append([alert('1', 'a'), alert('2', 'b')]);
    first.journal.append([alert('1', 'a', 'cleared')]);
    // a cleared event of an older episode must not remove the newer one on the same topic
    first.journal.append([alert('0', 'b', 'cleared'), alert('3', 'c')]);
    await first.journal.close();
    appendFileSync(join(dataDir, 'alerts', 'journal.jsonl'), '{"k":"above","e":{"id":"4"');

    const second = await AlertJournal.open({ dataDir, sync: true, log });
    expect(second.existed).toBe(true);
    expect(second.active.map((a) => a.event.id).sort()).toEqual(['2', '3']);
    // rewritten compactly at open
    expect(
      readFileSync(join(dataDir, 'alerts', 'journal.jsonl'), 'utf8')
        .trim()
        .split('\n'),
    ).toHaveLength(2);
    await second.journal.saveSeen([{ building: 'building_001', floor: '1F', room: 'a', sensorType: 'co2' }]);
    await second.journal.close();
    const third = await AlertJournal.open({ dataDir, sync: false, log });
    expect(third.seen).toEqual([{ building: 'building_001', floor: '1F', room: 'a', sensorType: 'co2' }]);
    await third.journal.close();
  });

  it('compacts a long journal without losing later events', async () => {
    const dataDir = tempDir('journal-compact');
    const { journal } = await AlertJournal.open({ dataDir, sync: false, log });
    for (let i = 0; i < 6000; i++)
      journal.append([alert(`r${i}`, `x${i % 3}`), alert(`r${i}`, `x${i % 3}`, 'cleared')]);
    const active = [alert('keep', 'k')];
    journal.append(active);
    journal.compactIfLarge(() => active);
    journal.append([alert('late', 'l')]);
    await journal.close();
    const lines = readFileSync(join(dataDir, 'alerts', 'journal.jsonl'), 'utf8')
      .trim()
      .split('\n');
    expect(lines.length).toBeLessThan(10);
    const reopened = await AlertJournal.open({ dataDir, sync: false, log });
    expect(reopened.active.map((a) => a.event.id).sort()).toEqual(['keep', 'late']);
    await reopened.journal.close();
  });
});
