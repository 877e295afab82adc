import {
  appendFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import {
  DurableLog,
  decodeBody,
  encodeRecord,
  type LogRecord,
  type StoredRecord,
  scanRecords,
  segmentFiles,
} from '../../src/pipeline/durableLog.js';

const silent = pino({ level: 'silent' });
const rec = (i: number, lines = [`m,t=x v=${i} ${i}`]): LogRecord => ({
  topic: `sensors/1/1/r${i}/t`,
  clientId: 'c',
  receivedAtMs: 1000 + i,
  payload: `{"value":${i}}`,
  lines,
});
const dir = () => mkdtempSync(join(tmpdir(), 'ei-log-'));

describe('log record encoding', () => {
  it('round-trips any record, and a truncated or altered body is refused', () => {
    fc.assert(
      fc.property(
        fc.string(),
        fc.option(fc.string(), { nil: null }),
        fc.integer({ min: 0, max: 2 ** 47 }),
        fc.string({ unit: 'grapheme' }),
        fc.array(fc.string({ unit: 'grapheme' }), { maxLength: 5 }),
        (topic, clientId, receivedAtMs, payload, lines) => {
          const rec: LogRecord = { topic, clientId, receivedAtMs, payload, lines };
          const buf = encodeRecord(rec);
          const { records, valid } = scanRecords(buf, 100);
          expect(valid).toBe(buf.length);
          expect(records).toEqual([{ start: 100, end: 100 + buf.length, record: rec }]);
          expect(() => decodeBody(buf.subarray(8, buf.length - 1))).toThrow();
        },
      ),
    );
  });
});

describe('durable log', () => {
  it('appends, makes durable, and reads back in order with offsets', async () => {
    const d = dir();
    const log = await DurableLog.open({ dir: d, durability: 'fsync', maxBytes: 1 << 30, log: silent });
    const a = [0, 1, 2].map((i) => log.append(rec(i, ['한글 "q" \\ ,=', `line ${i}`])));
    await Promise.all(a.map((x) => x.durable));
    expect(a[0]!.start).toBe(0);
    expect(a[1]!.start).toBe(a[0]!.end);
    const back = await log.read(0, 1 << 20);
    expect(back.map((r) => r.record)).toEqual([0, 1, 2].map((i) => rec(i, ['한글 "q" \\ ,=', `line ${i}`])));
    expect(back.map((r) => [r.start, r.end])).toEqual(a.map((x) => [x.start, x.end]));
    await log.close();
  });

  it('reuses written chunks (issue 15) without ever overwriting a record that is not on disk yet', async () => {
    const d = dir();
    const log = await DurableLog.open({ dir: d, durability: 'relaxed', maxBytes: 1 << 30, log: silent });
    // ~7 MiB in records of ~2 KiB, in groups with a write in between: chunks fill, retire, come back
    const lines = (i: number) => [`m,t=x v=${i} ${i} ${'p'.repeat(2000)}`];
    const appended: Array<{ start: number; end: number }> = [];
    for (let g = 0; g < 80; g++) {
      // one group of 3 MiB in a single synchronous run: three chunks filled before any write
      const size = g === 40 ? 1500 : 25;
      const base = appended.length;
      const group = Array.from({ length: size }, (_, k) => log.append(rec(base + k, lines(base + k))));
      appended.push(...group);
      if (g % 3 !== 2) await group.at(-1)!.durable; // and sometimes two groups before a write ends
    }
    await log.close();
    expect(log.chunksAllocated).toBeLessThan(6); // 7 MiB of records through a few 1 MiB chunks
    const reopened = await DurableLog.open({ dir: d, durability: 'relaxed', maxBytes: 1 << 30, log: silent });
    const back: StoredRecord[] = [];
    for (let from = 0; back.length < appended.length; ) {
      const got = await reopened.read(from, 1 << 20);
      if (got.length === 0) break;
      back.push(...got);
      from = got.at(-1)!.end;
    }
    expect(back.length).toBe(appended.length);
    for (const [i, r] of back.entries()) expect(r.record).toEqual(rec(i, lines(i)));
    await reopened.close();
  });

  it('group commit: one fsync covers every record appended in the same moment', async () => {
    const log = await DurableLog.open({ dir: dir(), durability: 'fsync', maxBytes: 1 << 30, log: silent });
    const appended = Array.from({ length: 1000 }, (_, i) => log.append(rec(i)));
    await Promise.all(appended.map((a) => a.durable));
    expect(log.syncs).toBeLessThanOrEqual(2);
    await log.close();
  });

  it('recovers after a restart, and truncates a torn tail without refusing to start', async () => {
    const d = dir();
    const log = await DurableLog.open({ dir: d, durability: 'fsync', maxBytes: 1 << 30, log: silent });
    const a = [0, 1, 2].map((i) => log.append(rec(i)));
    await Promise.all(a.map((x) => x.durable));
    await log.close();
    const seg = join(d, segmentFiles(d)[0]!.name);
    // power loss mid-write: half a record header and body
    appendFileSync(seg, Buffer.from([0x40, 0, 0, 0, 1, 2, 3, 4, 0x7b, 0x22]));
    const warnings: string[] = [];
    const reopened = await DurableLog.open({
      dir: d,
      durability: 'fsync',
      maxBytes: 1 << 30,
      log: pino({ level: 'warn' }, { write: (s: string) => warnings.push(s) }),
    });
    expect(warnings.join('')).toMatch(/torn tail truncated/);
    expect(statSync(seg).size).toBe(a[2]!.end);
    expect(reopened.endOffset).toBe(a[2]!.end);
    expect((await reopened.read(0, 1 << 20)).length).toBe(3);
    const next = reopened.append(rec(3));
    expect(next.start).toBe(a[2]!.end);
    await next.durable;
    await reopened.close();
  });

  it('a flipped byte fails the checksum: that record and what follows it in the segment are dropped', async () => {
    const d = dir();
    const log = await DurableLog.open({ dir: d, durability: 'fsync', maxBytes: 1 << 30, log: silent });
    const a = [0, 1, 2].map((i) => log.append(rec(i)));
    await Promise.all(a.map((x) => x.durable));
    await log.close();
    const seg = join(d, segmentFiles(d)[0]!.name);
    const buf = readFileSync(seg);
    buf[a[1]!.start + 12] = buf[a[1]!.start + 12]! ^ 0xff;
    writeFileSync(seg, buf);
    const reopened = await DurableLog.open({ dir: d, durability: 'fsync', maxBytes: 1 << 30, log: silent });
    expect((await reopened.read(0, 1 << 20)).map((r) => r.record.receivedAtMs)).toEqual([1000]);
    await reopened.close();
  });

  it('rolls segments, persists the committed offset, deletes fully committed segments, and reports its size', async () => {
    const d = dir();
    const log = await DurableLog.open({
      dir: d,
      durability: 'relaxed',
      maxBytes: 1 << 30,
      segmentBytes: 1024,
      log: silent,
    });
    // several group commits: a segment rolls after the group that filled it
    const a: ReturnType<typeof log.append>[] = [];
    for (let g = 0; g < 12; g++) {
      const group = Array.from({ length: 5 }, (_, i) => log.append(rec(g * 5 + i, ['x'.repeat(100)])));
      await Promise.all(group.map((x) => x.durable));
      a.push(...group);
    }
    const before = segmentFiles(d).length;
    expect(before).toBeGreaterThan(4);
    expect(log.bytes).toBe(a.at(-1)!.end);
    log.commit('influx', a[40]!.end);
    await log.persistCommits();
    expect(readFileSync(join(d, 'committed.influx'), 'utf8').trim()).toBe(String(a[40]!.end));
    const after = segmentFiles(d);
    expect(after.length).toBeLessThan(before);
    expect(Number(after[0]!.name.slice(0, 20))).toBeLessThanOrEqual(a[40]!.end);
    // reading across segment boundaries from the committed offset returns the rest, in order
    const rest: number[] = [];
    let from = a[40]!.end;
    while (from < log.endOffset) {
      const got = await log.read(from, 4096);
      rest.push(...got.map((r) => r.record.receivedAtMs));
      from = got.at(-1)!.end;
    }
    expect(rest).toEqual(Array.from({ length: 19 }, (_, i) => 1041 + i));
    await log.close();
    const reopened = await DurableLog.open({
      dir: d,
      durability: 'relaxed',
      maxBytes: 1 << 30,
      segmentBytes: 1024,
      log: silent,
    });
    expect(reopened.committed('influx')).toBe(a[40]!.end);
    expect(reopened.endOffset).toBe(a.at(-1)!.end);
    await reopened.close();
    expect(readdirSync(d).some((f) => f.endsWith('.tmp'))).toBe(false);
  });

  it('says when the disk budget is full and wakes waiters when commits free space', async () => {
    const log = await DurableLog.open({
      dir: dir(),
      durability: 'relaxed',
      maxBytes: 4096,
      segmentBytes: 1024,
      log: silent,
    });
    const a: ReturnType<typeof log.append>[] = [];
    while (!log.full) a.push(log.append(rec(a.length, ['y'.repeat(200)])));
    await Promise.all(a.map((x) => x.durable));
    let woke = false;
    const waiting = log.waitForSpace().then(() => {
      woke = true;
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(woke).toBe(false);
    log.commit('influx', log.endOffset);
    await log.persistCommits();
    await waiting;
    expect(log.full).toBe(false);
    await log.close();
  });
});

describe('file errors on the hot path', () => {
  it('a segment roll that cannot open the next file keeps the current one, retries later, and never rejects', async () => {
    const d = dir();
    const errors: string[] = [];
    const log = await DurableLog.open({
      dir: d,
      durability: 'fsync',
      maxBytes: 64 * 1024 * 1024,
      segmentBytes: 1024,
      log: silent,
      onIoError: (op, err) => errors.push(`${op}:${(err as NodeJS.ErrnoException).code}`),
    });
    const big = rec(1, ['x'.repeat(2000)]);
    const size = encodeRecord(big).length;
    // the next segment's name is taken by a directory: open(…, 'a') fails (EISDIR), as it would with EMFILE
    const blocker = join(d, `${String(size).padStart(20, '0')}.seg`);
    mkdirSync(blocker);
    await log.append(big).durable;
    await new Promise((r) => setTimeout(r, 50));
    expect(errors).toEqual(['log_roll:EISDIR']);
    // appends go on into the current segment
    await log.append(rec(2)).durable;
    rmSync(blocker, { recursive: true });
    await new Promise((r) => setTimeout(r, 150)); // past the roll's retry backoff
    await log.append(rec(3)).durable;
    await log.append(rec(4)).durable;
    expect(segmentFiles(d).length).toBe(2);
    const back = await log.read(0, 1024 * 1024);
    const rest = await log.read(back.at(-1)!.end, 1024 * 1024);
    expect([...back, ...rest].map((r) => r.record.receivedAtMs)).toEqual([1001, 1002, 1003, 1004]);
    await log.close();
  });
});
