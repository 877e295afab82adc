import { describe, expect, it } from 'vitest';
import { anomalyFor, badMessage, unitFor, valueFor } from '../../simulators/profiles.js';
import { simulateOptions } from '../../simulators/simulate.js';
import { parseMessage } from '../../src/ingest/parse.js';

const at = (hourKst: number) => Date.UTC(2024, 0, 15, (hourKst + 24 - 9) % 24);
const mid = () => 0.5;

describe('simulator profiles', () => {
  it('follows day and night', () => {
    const s = { building: 1, floor: 1, room: 1, type: 'illuminance' };
    expect(valueFor(s, at(14), mid)).toBeGreaterThan(valueFor(s, at(2), mid) * 5);
    const t = { ...s, type: 'temperature' };
    expect(valueFor(t, at(14), mid)).toBeGreaterThan(valueFor(t, at(3), mid));
  });
  it('gives each building kind its own power profile', () => {
    const office = { building: 1, floor: 1, room: 1, type: 'power' };
    const home = { building: 2, floor: 1, room: 1, type: 'power' };
    expect(valueFor(office, at(11), mid)).toBeGreaterThan(valueFor(office, at(23), mid));
    expect(valueFor(home, at(21), mid)).toBeGreaterThan(valueFor(home, at(11), mid));
  });
  it('anomalies leave the normal band; bad messages are rejected by the daemon', () => {
    const s = { building: 1, floor: 1, room: 1, type: 'power' };
    expect(anomalyFor(s, mid)).toBeGreaterThan(valueFor(s, at(12), () => 1) * 2);
    const limits = { maxPayloadBytes: 65536, maxFutureSkewS: 300, maxAgeS: 604800 };
    for (let i = 0; i < 5; i++) {
      const bad = badMessage(s, () => i / 5 + 0.01);
      const r = parseMessage(
        `sensors/1/1/r/power${bad.topicSuffix ?? ''}`,
        Buffer.from(bad.payload),
        Date.now(),
        limits,
      );
      expect(r.rejections).toHaveLength(1);
    }
  });
  it('sends the daemon default unit for known types and none otherwise', () => {
    expect(unitFor('power')).toBe('W');
    expect(unitFor('vibration')).toBeUndefined();
  });
  it('parses the contract options with their defaults', () => {
    expect(simulateOptions([])).toMatchObject({
      url: 'mqtt://127.0.0.1:1883',
      buildings: 3,
      floors: 5,
      rooms: 4,
      types: ['temperature', 'humidity', 'power', 'illuminance'],
      intervalMs: 1000,
      durationS: 60,
      qos: 1,
      connections: 1,
    });
    expect(() => simulateOptions(['--url', 'http://x'])).toThrow(/--url/);
  });
});
