import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, RateLimitedLog } from '../../src/log.js';

function sink() {
  const out = new PassThrough();
  let text = '';
  out.on('data', (b: Buffer) => {
    text += b.toString();
  });
  return { out, text: () => text };
}

describe('logs', () => {
  it('JSON by default, one line per event, secrets redacted', () => {
    const s = sink();
    createLogger('info', s.out).info({ url: 'postgres://u:secret@h/db', count: 3 }, 'started');
    const line = JSON.parse(s.text().trim());
    expect(line).toMatchObject({ level: 30, msg: 'started', count: 3, url: '***', svc: 'energy-ingest' });
  });

  it('pretty when asked: one readable line, no JSON, secrets still redacted', () => {
    const s = sink();
    createLogger('info', s.out, true).warn(
      { password: 'hunter2', topic: 'sensors/1/a/b/power' },
      'write failed',
    );
    const text = s.text();
    expect(text.trim().split('\n')).toHaveLength(1);
    expect(text).toContain('WARN');
    expect(text).toContain('write failed');
    expect(text).not.toContain('hunter2');
    expect(() => JSON.parse(text)).toThrow();
  });

  it('rate-limits repeated warnings and reports how many were suppressed', () => {
    const s = sink();
    const limited = new RateLimitedLog(createLogger('info', s.out), 2, 60_000);
    for (let i = 0; i < 10; i++) limited.warn('bad_json', { reason: 'bad_json' }, 'rejected');
    expect(s.text().trim().split('\n')).toHaveLength(2);
  });
});
