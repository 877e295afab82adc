import { writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import mqtt from 'mqtt';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { mosquittoPub } from '../helpers/app.js';
import { launchChromium } from '../helpers/browser.js';
import { type DaemonProcess, metricValue, spawnDaemon } from '../helpers/daemon.js';
import { freePort, tempDir } from '../helpers/services.js';

// Browsers are attackers too (issue 12, items 3 and 5): in the default
// anonymous loopback mode, any page the operator opens can reach 127.0.0.1.
// A page of another origin (another port, a file:// page) must not get the
// MQTT WebSocket; a DNS-rebound name (Host: rebind.attacker.example) must not
// get the HTTP API; the status page itself keeps working under a strict CSP
// (no inline script or style, connections to its own origin only). Plus the
// XSS regression guards: HTML in topic segments, string fields, rule messages
// and building names stays text.

const XSS_NAME = '<img src=x onerror="window.__xss=1">HQ';
const XSS_MESSAGE = '<img src=x onerror="window.__xss=3">too hot';
const XSS_ROOM = '<img src=x onerror=window.__xss=4>';
const XSS_TYPE = '<svg onload=window.__xss=5>';
// unit and status hold at most 32 bytes
const XSS_UNIT = '<img src=x onerror=__xss=6>';
const XSS_STATUS = '<script>__xss=7</script>';

let daemon: DaemonProcess;
let browser: Browser;
let attacker: Server;
let attackerPort: number;
let base: string;

/** a page that tries the daemon's MQTT WebSocket and says whether it opened */
function probePage(wsUrl: string): string {
  return `<!doctype html><html><body><script>
window.result = new Promise(function (resolve) {
  try {
    var ws = new WebSocket(${JSON.stringify(wsUrl)}, 'mqtt');
    ws.onopen = function () { ws.close(); resolve('open'); };
    ws.onerror = function () { resolve('refused'); };
  } catch (e) { resolve('threw: ' + e.message); }
});
</script></body></html>`;
}

/** one raw HTTP request with the headers as given (fetch would not let a test set Host) */
function rawGet(path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port: daemon.httpPort, path, method: 'GET', headers, timeout: 10_000 },
      (res) => {
        let body = '';
        res.on('data', (b: Buffer) => {
          body += b.toString();
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end();
  });
}

/** a WebSocket upgrade from Node with the given headers: 'open' or the HTTP status of the refusal */
function wsAttempt(opts: { origin?: string; host?: string }): Promise<string | number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${daemon.httpPort}/mqtt`, 'mqtt', {
      origin: opts.origin,
      headers: opts.host ? { host: opts.host } : {},
      handshakeTimeout: 10_000,
    });
    ws.on('open', () => {
      ws.close();
      resolve('open');
    });
    ws.on('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      res.resume();
      ws.terminate();
    });
    ws.on('error', (e) => resolve(`error: ${e.message}`));
  });
}

/** CSP violations of a page, from both the console and securitypolicyviolation events */
async function watchCsp(page: Page): Promise<string[]> {
  const violations: string[] = [];
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) violations.push(m.text());
  });
  page.on('pageerror', (e) => violations.push(`pageerror: ${e.message}`));
  await page.exposeFunction('__reportViolation', (v: string) => violations.push(v));
  // (strings: page code runs in the browser, and this project's TypeScript has no DOM types)
  await page.addInitScript({
    content:
      "document.addEventListener('securitypolicyviolation', function (e) { window.__reportViolation(e.violatedDirective + ' ' + e.blockedURI); });",
  });
  return violations;
}

beforeAll(async () => {
  const cfg = join(tempDir('browser-attacks-cfg'), 'config.yaml');
  writeFileSync(
    cfg,
    `buildings:
  - { id: 1, name: ${JSON.stringify(XSS_NAME)}, address: ${JSON.stringify(XSS_STATUS)} }
alerts:
  locale: en
  rules:
    - { id: xss-rule, sensor_type: temperature, above: 30, message: ${JSON.stringify(XSS_MESSAGE)} }
    - { id: live-check, sensor_type: power, above: 100 }
`,
  );
  daemon = await spawnDaemon({ DATA_DIR: tempDir('browser-attacks'), ENERGY_INGEST_CONFIG: cfg });
  base = `http://127.0.0.1:${daemon.httpPort}`;
  attackerPort = await freePort();
  // the attacker's page: another origin (another port) on the same machine
  attacker = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(probePage(`ws://127.0.0.1:${daemon.httpPort}/mqtt`));
  });
  await new Promise<void>((resolve) => attacker.listen(attackerPort, '127.0.0.1', resolve));
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await new Promise((resolve) => (attacker ? attacker.close(resolve) : resolve(undefined)));
  daemon?.child.kill('SIGTERM');
  await daemon?.exited;
});

describe('pages of other origins', () => {
  it('a page served from another origin cannot open the MQTT WebSocket', async () => {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${attackerPort}/`);
    expect(await page.evaluate<string>('window.result')).toBe('refused');
    await page.close();
  }, 30_000);

  it('a file:// page (Origin: null) cannot open the MQTT WebSocket', async () => {
    const file = join(tempDir('browser-attacks-file'), 'attack.html');
    writeFileSync(file, probePage(`ws://127.0.0.1:${daemon.httpPort}/mqtt`));
    const page = await browser.newPage();
    await page.goto(pathToFileURL(file).href);
    expect(await page.evaluate<string>('window.result')).toBe('refused');
    await page.close();
  }, 30_000);

  it('refuses foreign origins and rebound host names at the upgrade, counted', async () => {
    expect(await wsAttempt({ origin: 'null' })).toBe(403);
    expect(await wsAttempt({ origin: 'http://127.0.0.1:1' })).toBe(403);
    expect(await wsAttempt({ origin: `http://evil.example:${daemon.httpPort}` })).toBe(403);
    // a DNS-rebound page: same origin as the Host it sends, but the name is not the daemon's
    const rebound = `rebind.attacker.example:${daemon.httpPort}`;
    expect(await wsAttempt({ origin: `http://${rebound}`, host: rebound })).toBe(421);
    // non-browsers send no Origin; the daemon's own origin is fine
    expect(await wsAttempt({})).toBe('open');
    expect(await wsAttempt({ origin: base })).toBe('open');
    expect(
      await wsAttempt({
        origin: `http://localhost:${daemon.httpPort}`,
        host: `localhost:${daemon.httpPort}`,
      }),
    ).toBe('open');
    const m = await daemon.metrics();
    expect(metricValue(m, 'energy_ingest_http_refused_total{reason="origin"}')).toBeGreaterThanOrEqual(3);
    expect(metricValue(m, 'energy_ingest_http_refused_total{reason="host"}')).toBeGreaterThanOrEqual(1);
  }, 30_000);

  it('answers HTTP only for its own host names (DNS rebinding); /health stays open for probes', async () => {
    const evil = { host: `rebind.attacker.example:${daemon.httpPort}` };
    for (const path of ['/api/status', '/api/latest', '/api/buildings', '/', '/assets/status.js', '/metrics'])
      expect((await rawGet(path, evil)).status, path).toBe(421);
    expect((await rawGet('/health', evil)).status).toBe(200);
    for (const host of [`127.0.0.1:${daemon.httpPort}`, `localhost:${daemon.httpPort}`, 'localhost', '[::1]'])
      expect((await rawGet('/api/status', { host })).status, host).toBe(200);
    const before = metricValue(await daemon.metrics(), 'energy_ingest_http_refused_total{reason="host"}');
    await rawGet('/api/status', evil);
    expect(metricValue(await daemon.metrics(), 'energy_ingest_http_refused_total{reason="host"}')).toBe(
      before + 1,
    );
  }, 30_000);

  it('MQTT.js over WebSocket from Node (no Origin) still works', async () => {
    const client = await mqtt.connectAsync(`ws://127.0.0.1:${daemon.httpPort}/mqtt`, {
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
    });
    try {
      const got = new Promise<string>((resolve) => client.on('message', (_t, p) => resolve(p.toString())));
      await client.subscribeAsync('ws-check/#', { qos: 1 });
      await client.publishAsync('ws-check/x', 'hello', { qos: 1 });
      expect(await got).toBe('hello');
    } finally {
      await client.endAsync();
    }
  }, 30_000);
});

describe('the status page under a strict Content-Security-Policy', () => {
  it('has no inline script or style and connects to its own origin only', async () => {
    const res = await fetch(`${base}/`);
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).not.toContain('unsafe-inline');
    expect(csp).not.toContain('unsafe-eval');
    expect(csp).not.toMatch(/(^|\s)(ws|wss|http|https):(\s|;|$)/);
    expect(csp).toMatch(/script-src 'self'(;|$)/);
    expect(csp).toMatch(/connect-src 'self'(;|$)/);
    expect(csp).toMatch(/style-src 'self'(;|$)/);
    const html = await res.text();
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(html).not.toMatch(/<style|\sstyle=/);
  });

  it('loads without CSP violations, and its live updates arrive over its WebSocket', async () => {
    const page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
    const violations = await watchCsp(page);
    await page.goto(`${base}/?lang=en`);
    await expect.poll(() => page.locator('#ready').textContent(), { timeout: 10_000 }).toBe('Ready');
    // the live alert feed is the page's WebSocket under connect-src 'self'
    await expect
      .poll(() => page.locator('#alerts-source').textContent(), { timeout: 10_000 })
      .toBe('live (MQTT)');
    await mosquittoPub(daemon.mqttPort, 'sensors/building_001/1F/csp/power', '{"value": 500}');
    await expect
      .poll(() => page.locator('#alerts tr[data-rule="live-check"]').count(), { timeout: 10_000 })
      .toBe(1);
    // and the polled parts (fetch under connect-src 'self')
    await expect.poll(() => page.locator('#buildings tr').count(), { timeout: 10_000 }).toBeGreaterThan(0);
    expect(await page.locator('#alerts-source').textContent()).toBe('live (MQTT)');
    expect(violations).toEqual([]);
    await page.close();
  }, 60_000);

  it('shows HTML from topic segments, string fields, rule messages and building names as text (XSS guard)', async () => {
    const page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${base}/?lang=en`);
    await expect
      .poll(() => page.locator('#alerts-source').textContent(), { timeout: 10_000 })
      .toBe('live (MQTT)');

    // HTML in a topic segment (room), in string fields (unit, status), in a rule message, in a building name
    await mosquittoPub(
      daemon.mqttPort,
      `sensors/building_001/1F/${XSS_ROOM}/temperature`,
      JSON.stringify({ value: 42, unit: XSS_UNIT, status: XSS_STATUS }),
    );
    await mosquittoPub(
      daemon.mqttPort,
      `sensors/building_001/1F/lab/${XSS_TYPE}`,
      JSON.stringify({ value: 1, unit: XSS_UNIT }),
    );
    const row = page.locator('#alerts tr[data-rule="xss-rule"]');
    await expect.poll(() => row.count(), { timeout: 10_000 }).toBe(1);
    const text = (await row.textContent()) ?? '';
    expect(text).toContain(XSS_ROOM);
    expect(text).toContain(XSS_MESSAGE);
    expect(text).toContain(XSS_UNIT);
    await expect
      .poll(async () => (await page.locator('#buildings').textContent()) ?? '', { timeout: 10_000 })
      .toContain(XSS_TYPE);
    // the payloads became text, not elements, and none of them ran
    expect(await page.locator('#alerts img, #alerts svg, #buildings img, #buildings svg').count()).toBe(0);
    expect(await page.evaluate<unknown>('window.__xss')).toBeUndefined();

    // the JSON endpoints opened directly in the browser render as text too
    for (const path of ['/api/buildings', '/api/latest', '/api/alerts/active']) {
      const p = await browser.newPage();
      await p.goto(`${base}${path}`);
      const body = (await p.locator('body').textContent()) ?? '';
      expect(body, path).toContain(path === '/api/buildings' ? 'onerror=\\"window.__xss=1\\"' : 'onerror');
      expect(await p.locator('img, svg, script').count(), path).toBe(0);
      expect(await p.evaluate<unknown>('window.__xss'), path).toBeUndefined();
      await p.close();
    }
    expect(await page.evaluate<unknown>('window.__xss')).toBeUndefined();
    expect(errors).toEqual([]);
    await page.close();
  }, 60_000);
});
