import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DeadLetterWriter, formatDeadLetter, PRESSURE_PAYLOAD } from '../../src/pipeline/deadLetter.js';
import { tempDir } from '../helpers/services.js';

const rec = (payload: Buffer | string, at = Date.parse('2026-03-02T10:00:00Z')) => ({
  receivedAtMs: at,
  clientId: 'c',
  topic: 'sensors/building_001/F1/r1/power',
  reason: 'bad_json' as const,
  detail: 'not JSON',
  payload,
});

function dirBytes(dir: string): number {
  return readdirSync(dir).reduce((n, f) => n + statSync(join(dir, f)).size, 0);
}

describe('formatDeadLetter', () => {
  it('keeps an ordinary payload as UTF-8 text (Korean included)', () => {
    const r = JSON.parse(formatDeadLetter(rec('{"value": 온도 }')));
    expect(r.payload).toBe('{"value": 온도 }');
    expect(r.payload_encoding).toBeUndefined();
  });

  it('stores base64 when the JSON-escaped text would be larger (control bytes)', () => {
    const bytes = Buffer.alloc(3000, 1);
    const line = formatDeadLetter(rec(bytes));
    const r = JSON.parse(line);
    expect(r.payload_encoding).toBe('base64');
    expect(Buffer.from(r.payload, 'base64').equals(bytes)).toBe(true);
    expect(line.length).toBeLessThan(1.4 * bytes.length);
  });

  it('escapes U+0085, U+2028 and U+2029, which line readers take for line ends (issue 12 item 7)', () => {
    const odd = 'a\u2028b\u2029c\u0085d';
    const line = formatDeadLetter({ ...rec(odd), topic: `sensors/${odd}`, clientId: odd, detail: odd });
    expect(line).not.toMatch(/[\u0085\u2028\u2029]/);
    expect(line).toContain('a\\u2028b\\u2029c\\u0085d');
    const r = JSON.parse(line);
    expect([r.payload, r.topic, r.client_id, r.detail]).toEqual([odd, `sensors/${odd}`, odd, odd]);
  });

  it('cuts at the given length and says so', () => {
    const r = JSON.parse(formatDeadLetter(rec('x'.repeat(5000)), PRESSURE_PAYLOAD));
    expect(r.payload).toBe('x'.repeat(PRESSURE_PAYLOAD));
    expect(r.payload_truncated).toBe(true);
  });
});

describe('DeadLetterWriter budget', () => {
  const opts = (dataDir: string, drops: string[]) => ({
    dataDir,
    maxBytes: 64 * 1024,
    maxFileBytes: 16 * 1024,
    maxQueuedBytes: 1024 * 1024,
    onError: (err: Error) => {
      throw err;
    },
    onDrop: (reason: string, n: number) => {
      for (let i = 0; i < n; i++) drops.push(reason);
    },
  });

  it('rotates day files, deletes earlier days first, then drops and counts', async () => {
    const dataDir = tempDir('dl-unit');
    const dir = join(dataDir, 'deadletter');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, '2026-03-01.jsonl'), `${'{}\n'.repeat(5000)}`); // 15 kB of yesterday
    const drops: string[] = [];
    const w = new DeadLetterWriter(opts(dataDir, drops));
    await w.open();
    const today = Date.parse('2026-03-02T10:00:00Z');
    await Promise.all(
      Array.from({ length: 200 }, (_, i) => w.append(rec(`bad ${i} ${'y'.repeat(900)}`, today))),
    );
    await w.close();
    const files = readdirSync(dir).sort();
    expect(files).not.toContain('2026-03-01.jsonl');
    expect(files).toContain('2026-03-02.jsonl');
    expect(files).toContain('2026-03-02.1.jsonl');
    for (const f of files) expect(statSync(join(dir, f)).size).toBeLessThanOrEqual(16 * 1024);
    expect(dirBytes(dir)).toBeLessThanOrEqual(64 * 1024);
    expect(w.diskBytes).toBe(dirBytes(dir));
    expect(drops.length).toBeGreaterThan(0);
    expect(drops.every((d) => d === 'budget')).toBe(true);
    const lines = files.flatMap((f) => readFileSync(join(dir, f), 'utf8').split('\n').filter(Boolean));
    expect(lines.length + drops.length).toBe(200);
    expect(w.written).toBe(lines.length);
  });

  it('drops (counted) rather than queueing without limit', async () => {
    const drops: string[] = [];
    const w = new DeadLetterWriter({
      ...opts(tempDir('dl-unit-q'), drops),
      maxBytes: 10 ** 9,
      maxQueuedBytes: 8 * 1024,
    });
    await w.open();
    await Promise.all(Array.from({ length: 100 }, (_, i) => w.append(rec(`bad ${i} ${'z'.repeat(900)}`))));
    await w.close();
    expect(drops.filter((d) => d === 'queue_full').length).toBeGreaterThan(50);
    expect(w.written + drops.length).toBe(100);
  });
});
