import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { describeFile, LineWriter, readLines, verifySet } from '../../src/backup/files.js';
import { encodePoint, parsePoint, pointToReading } from '../../src/backup/readingsCodec.js';
import { planPrune, prune } from '../../src/backup/run.js';
import { DirStore, setName } from '../../src/backup/store.js';
import { loadConfig } from '../../src/config/load.js';
import { IngestError } from '../../src/errors.js';
import { encodeReading } from '../../src/ingest/lineProtocol.js';

const tmp = (p: string) => mkdtempSync(join(tmpdir(), `ei-${p}-`));
const at = (i: number) => setName(new Date(Date.UTC(2026, 0, 1, 0, 0, i)));

describe('backup.keep pruning', () => {
  it('keeps the newest `keep` complete sets and deletes older and failed ones, never a newer unfinished one', () => {
    const sets = [
      { name: at(1), complete: true },
      { name: at(2), complete: false }, // failed or crashed run
      { name: at(3), complete: true },
      { name: at(4), complete: true },
      { name: at(5), complete: true },
      { name: at(6), complete: false }, // may still be running
    ];
    expect(planPrune(sets, 2)).toEqual([at(1), at(2), at(3)]);
    expect(planPrune(sets, 7)).toEqual([at(2)]);
    expect(planPrune(sets, 1)).toEqual([at(1), at(2), at(3), at(4)]);
    expect(planPrune([{ name: at(1), complete: false }], 1)).toEqual([]);
    expect(planPrune([], 3)).toEqual([]);
  });

  it('prunes a directory target: sets whose manifest says incomplete do not count as kept', async () => {
    const root = tmp('prune');
    const make = (i: number, complete: boolean | null) => {
      mkdirSync(join(root, at(i)));
      writeFileSync(join(root, at(i), 'x'), 'x');
      if (complete !== null) writeFileSync(join(root, at(i), 'manifest.json'), JSON.stringify({ complete }));
    };
    make(1, true);
    make(2, true);
    make(3, false);
    make(4, null);
    make(5, true);
    make(6, true);
    mkdirSync(join(root, 'unrelated'));
    const lines: string[] = [];
    const removed = await prune(new DirStore(root), 2, (l) => lines.push(l));
    expect(removed).toEqual([at(1), at(2), at(3), at(4)]);
    expect(readdirSync(root).sort()).toEqual([at(5), at(6), 'unrelated'].sort());
    expect(lines).toHaveLength(4);
  });

  it('set names sort by time', () => {
    const names = [
      new Date(Date.UTC(2026, 10, 30, 9)),
      new Date(Date.UTC(2026, 10, 30, 10)),
      new Date(Date.UTC(2027, 0, 1)),
    ].map(setName);
    expect([...names].sort()).toEqual(names);
    expect(names[0]).toBe('energy-ingest-2026-11-30T09-00-00-000Z');
  });
});

describe('readings file encoding', () => {
  // tags never hold control characters (refused at parse); string fields may hold line breaks
  const tag = fc.oneof(
    fc.string({ minLength: 1, maxLength: 12 }).filter((s) => !/[\u0000-\u001f\u007f]/.test(s)),
    fc.constantFrom('회의실 A', 'a,b=c d', 'x\\y', '"q"', '\\n'),
  );
  const text = fc.oneof(
    fc.string({ maxLength: 12 }),
    fc.constantFrom('회의실 A', 'a,b=c d', 'x\\y', '"q"', 'line\nbreak', 'cr\rx', '\\n'),
  );
  it('parsePoint reads back exactly what encodePoint wrote (tags, strings with line breaks, numbers, booleans)', () => {
    fc.assert(
      fc.property(
        tag,
        tag,
        text,
        fc.double({ noNaN: true, noDefaultInfinity: true }),
        text,
        fc.oneof(text, fc.boolean(), fc.double({ noNaN: true, noDefaultInfinity: true })),
        fc.integer({ min: 0, max: 4e12 }),
        (floor, room, unit, value, status, extra, ts) => {
          const p = {
            tags: { building_id: 'building_001', floor, room, sensor_type: 'power' },
            fields: [
              ['value', value],
              ['unit', unit],
              ['status', status],
              ['note', extra],
            ] as Array<[string, number | string | boolean]>,
            timestampMs: ts,
          };
          const line = encodePoint(p);
          expect(line).not.toMatch(/[\n\r]/);
          const back = parsePoint(line);
          expect({ ...back.tags }).toEqual(p.tags);
          expect(back.fields).toEqual(p.fields.map(([k, v]) => [k, Object.is(v, -0) ? 0 : v]));
          expect(back.timestampMs).toBe(ts);
          // and re-encoded for InfluxDB 1.x it is what the daemon would have written there
          const r = pointToReading(back);
          expect(encodeReading(r, 'escape', 'escape')).toBe(line);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('manifest verification', () => {
  it('refuses a set whose file does not match its SHA-256, size, or is missing; accepts an intact one', async () => {
    const dir = tmp('verify');
    const w = await LineWriter.open(dir, 'postgres/users.jsonl.gz');
    await w.write('{"id":1}');
    await w.close();
    const entry = await describeFile(dir, 'postgres/users.jsonl.gz');
    const manifest = (files: unknown[], complete = true) =>
      JSON.stringify({
        format: 'energy-ingest-backup',
        format_version: 1,
        name: 'n',
        complete,
        parts: {},
        files,
      });
    await expect(verifySet(dir, manifest([entry]), dir)).resolves.toMatchObject({ name: 'n' });
    const lines: string[] = [];
    for await (const l of readLines(join(dir, entry.path))) lines.push(l);
    expect(lines).toEqual(['{"id":1}']);

    const bad = { ...entry, sha256: '0'.repeat(64) };
    await expect(verifySet(dir, manifest([bad]), dir)).rejects.toThrow(
      /corrupted.*postgres\/users\.jsonl\.gz: SHA-256/,
    );
    await expect(verifySet(dir, manifest([{ ...entry, bytes: 1 }]), dir)).rejects.toThrow(
      /bytes, manifest says 1/,
    );
    await expect(verifySet(dir, manifest([{ ...entry, path: 'gone.gz' }]), dir)).rejects.toThrow(
      /gone\.gz: missing/,
    );
    await expect(verifySet(dir, manifest([{ ...entry, path: '../x' }]), dir)).rejects.toThrow(/bad path/);
    await expect(verifySet(dir, '{not json', dir)).rejects.toThrow(/not JSON/);
    await expect(verifySet(dir, undefined, dir)).rejects.toThrow(/no manifest\.json/);
    await expect(verifySet(dir, manifest([entry], false), dir)).rejects.toThrow(/incomplete/);
    const err = await verifySet(dir, manifest([bad]), dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IngestError);
    expect((err as IngestError).code).toBe('EI_BACKUP_CORRUPT');
  });
});

describe('backup configuration', () => {
  it('defaults: no schedule, keep 7, S3 region us-east-1; S3_* env vars are read through the schema', () => {
    const c = loadConfig({ env: {} });
    expect(c.backup).toEqual({ keep: 7 });
    expect(c.s3).toEqual({ region: 'us-east-1' });
    const e = loadConfig({
      env: {
        S3_ENDPOINT: 'http://127.0.0.1:9000',
        S3_ACCESS_KEY: 'minio',
        S3_SECRET_KEY: 'minio-secret',
        S3_REGION: 'eu-west-1',
        EI_BACKUP_CRON: '0 3 * * *',
        EI_BACKUP_TO: 's3://backups/energy',
        EI_BACKUP_KEEP: '3',
      },
    });
    expect(e.s3).toEqual({
      endpoint: 'http://127.0.0.1:9000',
      accessKey: 'minio',
      secretKey: 'minio-secret',
      region: 'eu-west-1',
    });
    expect(e.backup).toEqual({ cron: '0 3 * * *', to: 's3://backups/energy', keep: 3 });
  });

  it('backup.cron must be valid and needs backup.to', () => {
    expect(() => loadConfig({ env: { EI_BACKUP_CRON: 'every day' } })).toThrow(/backup\.cron: "every day"/);
    expect(() => loadConfig({ env: { EI_BACKUP_CRON: '0 3 * * *' } })).toThrow(
      /backup\.cron: needs backup\.to/,
    );
    expect(() => loadConfig({ env: { EI_BACKUP_KEEP: '0' } })).toThrow(/backup\.keep/);
  });
});
