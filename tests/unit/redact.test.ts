import { describe, expect, it } from 'vitest';
import { loadConfig, redactedConfig } from '../../src/config/load.js';
import { redactText, redactUrl, splitUrlCredentials } from '../../src/redact.js';

describe('redactUrl', () => {
  it('hides a userinfo password and keeps the rest', () => {
    const r = redactUrl('http://user:secret@db.example:8086/x');
    expect(r).not.toContain('secret');
    expect(r).toContain('db.example:8086');
    expect(r).toContain('user');
  });
  it('hides password-like query parameters', () => {
    for (const k of ['password', 'pass', 'pwd', 'token', 'p', 'PASSWORD']) {
      const r = redactUrl(`postgres://u@h/db?sslmode=require&${k}=secret`);
      expect(r, k).not.toContain('secret');
      expect(r).toContain('sslmode=require');
    }
  });
  it('leaves a URL without secrets alone', () => {
    expect(redactUrl('http://127.0.0.1:8086')).toBe('http://127.0.0.1:8086');
  });
});

describe('redactText', () => {
  it('redacts every URL inside a message, fetch-style', () => {
    const msg =
      'Request cannot be constructed from a URL that includes credentials: http://user:secret@127.0.0.1:1/ping; also redis://:s3cr3t@h:6379 and postgres://u@h/db?password=pw9';
    const r = redactText(msg);
    for (const s of ['secret', 's3cr3t', 'pw9']) expect(r).not.toContain(s);
    expect(r).toContain('127.0.0.1:1/ping');
  });
  it('leaves plain text alone', () => {
    expect(redactText('InfluxDB at http://127.0.0.1:1 did not answer')).toBe(
      'InfluxDB at http://127.0.0.1:1 did not answer',
    );
  });
});

describe('credentials in INFLUX_URL', () => {
  it('are split off the URL', () => {
    expect(splitUrlCredentials('http://us%40r:p%3Ass@h:8086/base?u=x')).toEqual({
      url: 'http://h:8086/base',
      username: 'us@r',
      password: 'p:ss',
    });
    expect(splitUrlCredentials('http://h:8086?u=a&p=b')).toEqual({
      url: 'http://h:8086/',
      username: 'a',
      password: 'b',
    });
    expect(splitUrlCredentials('http://h:8086')).toEqual({ url: 'http://h:8086' });
  });
  it('move into influx.username/password at config load; explicit ones win', () => {
    const c = loadConfig({ env: { INFLUX_URL: 'http://user:secret@127.0.0.1:8086' } });
    expect(c.influx.url).toBe('http://127.0.0.1:8086/');
    expect(c.influx.username).toBe('user');
    expect(c.influx.password).toBe('secret');
    expect(JSON.stringify(redactedConfig(c))).not.toContain('secret');
    const e = loadConfig({
      env: {
        INFLUX_URL: 'http://user:secret@127.0.0.1:8086',
        INFLUX_USERNAME: 'admin',
        INFLUX_PASSWORD: 'other',
      },
    });
    expect(e.influx).toMatchObject({ url: 'http://127.0.0.1:8086/', username: 'admin', password: 'other' });
  });
  it('energy-ingest config does not print ?password= of DATABASE_URL/REDIS_URL', () => {
    const c = loadConfig({
      env: {
        DATABASE_URL: 'postgres://u@h/db?password=secret',
        REDIS_URL: 'redis://h:6379?password=secret2',
      },
    });
    expect(JSON.stringify(redactedConfig(c))).not.toContain('secret');
  });
});

describe('URLs inside error messages and log lines', () => {
  it('networkMessage (sink retries, /ready) hides a password that fetch repeated', async () => {
    const { networkMessage } = await import('../../src/sinks/sink.js');
    const err = new TypeError('fetch failed', {
      cause: new Error(
        'Request cannot be constructed from a URL that includes credentials: http://u:pw9@h/write',
      ),
    });
    expect(networkMessage(err)).not.toContain('pw9');
    expect(networkMessage(new Error('bad http://u:pw9@h/'))).not.toContain('pw9');
  });
  it('log messages and logged errors are scrubbed', async () => {
    const { PassThrough } = await import('node:stream');
    const { createLogger } = await import('../../src/log.js');
    const out = new PassThrough();
    let text = '';
    out.on('data', (b: Buffer) => {
      text += b.toString();
    });
    const log = createLogger('info', out);
    log.warn('InfluxDB at http://u:pw9@h:8086 did not answer');
    log.warn({ err: new Error('cannot reach redis://:pw8@h:6379/0') }, 'redis down');
    log.warn({ detail: 'postgres://u@h/db?password=pw7' }, 'metadata %s', 'http://a:pw6@h/');
    expect(text).toContain('h:8086');
    for (const s of ['pw9', 'pw8', 'pw7', 'pw6']) expect(text).not.toContain(s);
  });
});
