import { mkdtempSync, writeFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { BrowserGuard, type BrowserGuardOptions, hostName } from '../../src/http/origin.js';
import { Metrics } from '../../src/metrics.js';

// The Host / Origin policy of src/http/origin.ts (the browser side is tests/e2e/browser-attacks.test.ts).

function guard(opts: Partial<BrowserGuardOptions> = {}) {
  const metrics = new Metrics();
  const g = new BrowserGuard(
    { bindHost: '127.0.0.1', tls: false, ...opts },
    metrics,
    pino({ level: 'silent' }),
  );
  return { g, metrics };
}

function req(headers: Record<string, string>): IncomingMessage {
  return { headers, url: '/mqtt', socket: { remoteAddress: '127.0.0.1' } } as unknown as IncomingMessage;
}

describe('Host check (DNS rebinding)', () => {
  it('serves loopback names and the bind address by default, whatever the port', () => {
    const { g } = guard({ bindHost: '127.0.0.5' });
    for (const h of [
      'localhost',
      'LOCALHOST:8080',
      '127.0.0.1:8080',
      '[::1]:8080',
      '127.0.0.5',
      'localhost.',
    ])
      expect(g.hostAllowed(h), h).toBe(true);
    for (const h of [
      'rebind.attacker.example',
      'rebind.attacker.example:8080',
      'localhost.attacker.example',
      '127.0.0.2',
      '',
      'a b',
      'x@localhost',
    ])
      expect(g.hostAllowed(h), h).toBe(false);
    // no Host at all: HTTP/1.0 tools, never a browser
    expect(g.hostAllowed(undefined)).toBe(true);
  });

  it('answers any name on a wildcard bind unless names are configured', () => {
    expect(guard({ bindHost: '0.0.0.0' }).g.hostAllowed('anything.example')).toBe(true);
    expect(guard({ bindHost: '::' }).g.hostAllowed('anything.example')).toBe(true);
    const { g } = guard({ bindHost: '0.0.0.0', allowedHosts: ['ingest.example', '*.corp.example', '::1'] });
    expect(g.hostAllowed('ingest.example:8080')).toBe(true);
    expect(g.hostAllowed('a.b.corp.example')).toBe(true);
    expect(g.hostAllowed('[::1]:80')).toBe(true);
    expect(g.hostAllowed('localhost')).toBe(false);
    expect(g.hostAllowed('evilcorp.example')).toBe(false);
    expect(guard({ allowedHosts: ['*'] }).g.hostAllowed('whatever')).toBe(true);
  });

  it('counts refusals by reason, 421 for a host and 403 for an origin', () => {
    const { g, metrics } = guard();
    expect(g.request(req({ host: 'rebind.attacker.example' }))).toMatchObject({ ok: false, status: 421 });
    expect(g.upgrade(req({ host: '127.0.0.1:1', origin: 'null' }))).toMatchObject({ ok: false, status: 403 });
    expect(metrics.httpRefused.get({ reason: 'host' })).toBe(1);
    expect(metrics.httpRefused.get({ reason: 'origin' })).toBe(1);
  });

  it('normalises names', () => {
    expect(hostName('::1')).toBe('[::1]');
    expect(hostName('Example.COM:443')).toBe('example.com');
    expect(hostName('a/b')).toBeUndefined();
  });
});

describe('Origin check (WebSocket upgrades)', () => {
  it('lets non-browsers and the page itself in, refuses other origins and "null"', () => {
    const { g } = guard();
    expect(g.originAllowed(undefined, '127.0.0.1:8080')).toBe(true);
    expect(g.originAllowed('http://127.0.0.1:8080', '127.0.0.1:8080')).toBe(true);
    expect(g.originAllowed('http://localhost:8080', 'localhost:8080')).toBe(true);
    expect(g.originAllowed('http://127.0.0.1:8081', '127.0.0.1:8080')).toBe(false);
    expect(g.originAllowed('https://127.0.0.1:8080', '127.0.0.1:8080')).toBe(false);
    expect(g.originAllowed('http://127.0.0.2:8080', '127.0.0.1:8080')).toBe(false);
    expect(g.originAllowed('null', '127.0.0.1:8080')).toBe(false);
    expect(g.originAllowed('file://', '127.0.0.1:8080')).toBe(false);
    expect(g.originAllowed('http://127.0.0.1:8080', undefined)).toBe(false);
  });

  it('over TLS the own origin is https, default port dropped', () => {
    const { g } = guard({ tls: true });
    expect(g.originAllowed('https://localhost', 'localhost:443')).toBe(true);
    expect(g.originAllowed('http://localhost:443', 'localhost:443')).toBe(false);
  });

  it('adds configured origins', () => {
    const { g } = guard({ allowedOrigins: ['https://grafana.example:3000/'] });
    expect(g.originAllowed('https://grafana.example:3000', '127.0.0.1:8080')).toBe(true);
    expect(g.originAllowed('https://grafana.example', '127.0.0.1:8080')).toBe(false);
    expect(guard({ allowedOrigins: ['*'] }).g.originAllowed('null', 'x')).toBe(true);
  });
});

describe('configuration', () => {
  it('takes YAML lists or comma-separated env values and reports bad entries with the others', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ei-origin-'));
    const p = join(dir, 'c.yaml');
    writeFileSync(p, 'http:\n  allowedHosts: [ingest.example, "*.corp.example"]\n');
    const c = loadConfig({
      configPath: p,
      env: { EI_HTTP_ALLOWED_ORIGINS: 'https://a.example, http://b.example:81' },
    });
    expect(c.http.allowedHosts).toEqual(['ingest.example', '*.corp.example']);
    expect(c.http.allowedOrigins).toEqual(['https://a.example', 'http://b.example:81']);
    expect(loadConfig({ env: {} }).http.allowedHosts).toBeUndefined();
    expect(() =>
      loadConfig({
        env: {
          EI_HTTP_ALLOWED_ORIGINS: 'https://a.example/path',
          EI_HTTP_ALLOWED_HOSTS: 'a/b',
          MQTT_PORT: 'x',
        },
      }),
    ).toThrow(
      /allowedHosts: "a\/b"[\s\S]*allowedOrigins: "https:\/\/a.example\/path"|allowedOrigins[\s\S]*allowedHosts/,
    );
  });
});
