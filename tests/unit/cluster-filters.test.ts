import { describe, expect, it } from 'vitest';
import { FilterView, isValidFilter, LocalFilters } from '../../src/cluster/filters.js';
import { batchHeader, decodeBatch, encodeMessage } from '../../src/cluster/frame.js';

// The cluster's subscription view (issue 14 item 2): which other nodes a
// message must cross to, by MQTT 3.1.1 filter semantics.

/** reference matcher, level by level, straight from MQTT 3.1.1 section 4.7 */
function matches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

describe('FilterView', () => {
  it('matches by MQTT semantics: + is one level, # is this level and below', () => {
    const v = new FilterView();
    v.set('a', ['sensors/#']);
    v.set('b', ['sensors/+/1/+/power', 'alerts/building_001/#']);
    v.set('c', ['plain/topic', '#']);
    expect(v.match('sensors/building_001/1/r1/power').sort()).toEqual(['a', 'b', 'c']);
    expect(v.match('sensors/building_001/2/r1/power').sort()).toEqual(['a', 'c']);
    expect(v.match('sensors').sort()).toEqual(['a', 'c']); // a/# matches a
    expect(v.match('alerts/building_001/1/r/power/x').sort()).toEqual(['b', 'c']);
    expect(v.match('plain/topic').sort()).toEqual(['c']);
    v.remove('c');
    expect(v.match('plain/topic')).toEqual([]);
    expect(v.match('plain/topic/deeper')).toEqual([]);
    expect(v.match('sensors/b//r/power')).toEqual(['a']); // empty level: + matches it, not the 1
  });

  it('is empty (the per-message check) exactly when no owner has a filter', () => {
    const v = new FilterView();
    expect(v.empty).toBe(true);
    v.set('a', ['x/#']);
    expect(v.empty).toBe(false);
    v.set('a', []);
    expect(v.empty).toBe(true);
    expect(v.match('x/y')).toEqual([]);
  });

  it('names each owner once even when several of its filters match', () => {
    const v = new FilterView();
    v.set('a', ['#', 'x/#', 'x/+', 'x/y']);
    expect(v.match('x/y')).toEqual(['a']);
  });

  it('ignores invalid filters and keeps only live owners', () => {
    const v = new FilterView();
    v.set('a', ['x/#/y', 'x/y#', 'ok/+']);
    expect(v.size).toBe(1);
    v.set('b', ['ok/+']);
    v.retain(new Set(['b']));
    expect(v.owners()).toEqual(['b']);
    expect(isValidFilter('')).toBe(false);
    expect(isValidFilter('+/+/#')).toBe(true);
  });

  it('agrees with the reference matcher on generated filters and topics', () => {
    const filters: string[] = [];
    const topics: string[] = [];
    for (let len = 1; len <= 4; len++)
      for (let seed = 0; seed < 40; seed++) {
        const f = Array.from(
          { length: len },
          (_, i) => ['a', 'b', '+', '', 'c'][(seed + i * ((seed % 3) + 1)) % 5]!,
        );
        if (seed % 4 === 0) f[len - 1] = '#';
        // the empty string is no filter (MQTT-4.7.3-1)
        if (f.join('/') !== '') filters.push(f.join('/'));
        topics.push(
          Array.from({ length: len }, (_, i) => ['a', 'b', '', 'c'][(seed * (i + 1)) % 4]!).join('/'),
        );
      }
    const v = new FilterView();
    for (const [i, f] of filters.entries()) v.set(`n${i}`, [f]);
    for (const t of topics) {
      const expected = filters.flatMap((f, i) => (matches(f, t) ? [`n${i}`] : [])).sort();
      expect(v.match(t).sort(), t).toEqual(expected);
    }
  });
});

describe('LocalFilters', () => {
  it('counts a filter while any client holds it', () => {
    const l = new LocalFilters();
    expect(l.add('c1', 'sensors/#')).toBe(true);
    expect(l.add('c2', 'sensors/#')).toBe(false); // no change to the node's set
    expect(l.add('c1', 'sensors/#')).toBe(false); // resubscribe
    expect(l.remove('c1', 'sensors/#')).toBe(false);
    expect(l.filters()).toEqual(['sensors/#']);
    expect(l.remove('c2', 'sensors/#')).toBe(true);
    expect(l.filters()).toEqual([]);
    expect(l.remove('c2', 'sensors/#')).toBe(false);
  });
});

describe('cluster frames', () => {
  it('carry topics and payloads byte for byte, in order', () => {
    const a = {
      topic: 'sensors/건물/1/r/power',
      payload: Buffer.from([0, 255, 10, 13]),
      qos: 1 as const,
      retain: false,
    };
    const b = { topic: 'alerts/x', payload: Buffer.alloc(0), qos: 0 as const, retain: true };
    const batch = Buffer.concat([batchHeader('node-1'), encodeMessage(a), encodeMessage(b)]);
    const d = decodeBatch(batch);
    expect(d.origin).toBe('node-1');
    expect(d.messages).toEqual([a, b]);
  });

  it('refuse a truncated or foreign batch with EI_CLUSTER_FRAME', () => {
    const batch = Buffer.concat([
      batchHeader('n'),
      encodeMessage({ topic: 't', payload: Buffer.from('xyz'), qos: 0, retain: false }),
    ]);
    expect(() => decodeBatch(batch.subarray(0, batch.length - 1))).toThrow(
      expect.objectContaining({ code: 'EI_CLUSTER_FRAME' }),
    );
    expect(() => decodeBatch(Buffer.from('hello'))).toThrow(
      expect.objectContaining({ code: 'EI_CLUSTER_FRAME' }),
    );
  });
});
