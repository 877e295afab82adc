import type { DurableLog, StoredRecord } from './durableLog.js';
import type { PointSource } from './writer.js';

/**
 * The message a line came from, read back from the log (a refused line is
 * dead-lettered with it). The record may still be in memory, not yet in its
 * segment file: wait for that write first. A rejected batch is bisected line
 * by line, and its refused lines come from neighbouring records: one read of
 * 64 KiB serves the following ones (the records it held are kept until a line
 * outside them is asked for); only a record larger than that reads more.
 */
export function recordReader(log: DurableLog): (offset: number) => Promise<PointSource | null> {
  let known = new Map<number, PointSource>();
  const sourceOf = (r: StoredRecord): PointSource => ({
    topic: r.record.topic,
    clientId: r.record.clientId,
    payload: r.record.payload,
  });
  return async (offset) => {
    const hit = known.get(offset);
    if (hit) return hit;
    // waitWritten resolves at the next write of the log, which may end before this record
    for (let i = 0; log.written <= offset && i < 1000; i++) await log.waitWritten(offset);
    let records = await log.read(offset, 64 * 1024);
    // a record holds at most one message (mqtt.maxPacketBytes) and its lines: a few MiB at worst
    if (records.length === 0) records = await log.read(offset, 8 * 1024 * 1024);
    known = new Map(records.map((r) => [r.start, sourceOf(r)]));
    return known.get(offset) ?? null;
  };
}
