import { describe, expect, it } from 'vitest';
import { BatchWriter, batchHeader, decodeBatch, encodeMessage } from '../../src/cluster/frame.js';

// The sender writes a node's batch message by message into one growing buffer
// (src/cluster/frame.ts BatchWriter): byte for byte what the receiver decodes,
// and the same bytes as the frames encodeMessage makes one by one.

describe('BatchWriter', () => {
  it('writes what decodeBatch reads, across growth, multi-byte topics and empty payloads', () => {
    const header = batchHeader('node-a');
    const w = new BatchWriter(header, 64);
    const sent = [
      {
        topic: 'sensors/건물A/1/room_1/temperature',
        payload: Buffer.from('{"value":21.5}'),
        qos: 0 as const,
      },
      { topic: 'alerts/building_001', payload: Buffer.alloc(0), qos: 1 as const },
      ...Array.from({ length: 200 }, (_, i) => ({
        topic: `sensors/building_${i}/2/room_3/power`,
        payload: Buffer.from(`x`.repeat(i)),
        qos: 2 as const,
      })),
    ];
    for (const m of sent) w.add(m.topic, m.payload, m.qos, false);
    expect(w.count).toBe(sent.length);
    const buf = w.finish();
    expect(buf.length).toBe(w.bytes);
    const { origin, messages } = decodeBatch(buf);
    expect(origin).toBe('node-a');
    expect(messages.map((m) => [m.topic, m.payload.toString(), m.qos, m.retain])).toEqual(
      sent.map((m) => [m.topic, m.payload.toString(), m.qos, false]),
    );
    const oneByOne = Buffer.concat([header, ...sent.map((m) => encodeMessage({ ...m, retain: false }))]);
    expect(buf.equals(oneByOne)).toBe(true);
  });

  it('an empty batch is the header alone', () => {
    const w = new BatchWriter(batchHeader('b'));
    expect(decodeBatch(w.finish())).toEqual({ origin: 'b', messages: [] });
  });
});
