import { describe, expect, it } from 'vitest';
import { grantedQoS, topicMatches } from '../../src/broker/conformance.js';

const m = (filter: string, topic: string) => topicMatches(filter, topic.split('/'));

describe('MQTT topic filter matching [MQTT-4.7]', () => {
  it('matches exact topics, + for one level and # for the rest (parent level included)', () => {
    expect(m('a/b', 'a/b')).toBe(true);
    expect(m('a/+', 'a/b')).toBe(true);
    expect(m('a/+', 'a/b/c')).toBe(false);
    expect(m('a/#', 'a/b/c')).toBe(true);
    expect(m('a/#', 'a')).toBe(true);
    expect(m('+/+', 'a')).toBe(false);
    expect(m('a/b', 'a/c')).toBe(false);
    expect(m('a/+/c', 'a//c')).toBe(true);
  });

  it('never matches $ topics with a leading wildcard [MQTT-4.7.2-1]', () => {
    expect(m('#', '$SYS/x')).toBe(false);
    expect(m('+/x', '$SYS/x')).toBe(false);
    expect(m('$SYS/#', '$SYS/x')).toBe(true);
  });
});

describe('granted QoS of a delivery', () => {
  it('is the highest QoS among matching filters, 2 when none matches', () => {
    const subs = { 'sensors/#': { qos: 0 }, 'sensors/+/1/+/power': { qos: 1 }, 'x/y': { qos: 2 } };
    expect(grantedQoS(subs, 'sensors/b/1/r/power')).toBe(1);
    expect(grantedQoS(subs, 'sensors/b/2/r/power')).toBe(0);
    expect(grantedQoS(subs, 'x/y')).toBe(2);
    expect(grantedQoS(subs, 'other')).toBe(2);
  });
});
