import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { migrate } from '../../src/metadata/migrations.js';
import { mosquittoPub } from '../helpers/app.js';
import { launchChromium } from '../helpers/browser.js';
import { type DaemonProcess, spawnDaemon } from '../helpers/daemon.js';
import { freshDatabase, tempDir } from '../helpers/services.js';

// The status page in a real browser (Debian's Chromium through playwright-core):
// live numbers from a running simulator, an alert raised by a threshold
// crossing appearing and clearing over MQTT/WebSocket, Korean and English,
// 1,000 buildings. Saves docs/status-page.png for the README.

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'energy-ingest.js');

let daemon: DaemonProcess;
let simulator: ChildProcess;
let browser: Browser;

beforeAll(async () => {
  const cfg = join(tempDir('status-cfg'), 'config.yaml');
  writeFileSync(
    cfg,
    `alerts:
  locale: en
  rules:
    - { id: server-room-hot, sensor_type: temperature, room: server, above: 35, hysteresis: 2, severity: critical }
    - { id: power-peak, sensor_type: power, building_id: 2, room: server, above: 9000 }
`,
  );
  daemon = await spawnDaemon({ DATA_DIR: tempDir('status-data'), ENERGY_INGEST_CONFIG: cfg });
  // 1,000 buildings × 2 types, one reading each every 2 s (1,000/s: light enough to share CI's 2 cores)
  simulator = spawn(
    'node',
    [
      BIN,
      'simulate',
      '--url',
      `mqtt://127.0.0.1:${daemon.mqttPort}`,
      '--buildings',
      '1000',
      '--floors',
      '1',
      '--rooms',
      '1',
      '--types',
      'temperature,power',
      '--interval-ms',
      '2000',
      '--duration-s',
      '0',
      '--qos',
      '0',
      '--anomaly-rate',
      '0',
      '--bad-rate',
      '0',
      '--quiet',
    ],
    { stdio: 'ignore' },
  );
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  simulator?.kill('SIGKILL');
  daemon?.child.kill('SIGTERM');
  await daemon?.exited;
});

describe('status page in Chromium', () => {
  it('shows readings flowing, the services, 1,000 buildings, and an alert that appears and clears', async () => {
    const page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`http://127.0.0.1:${daemon.httpPort}/?lang=en`);
    await expect.poll(() => page.locator('#ready').textContent(), { timeout: 10_000 }).toBe('Ready');

    // the readings counter rises while the simulator runs
    const received = async () => Number((await page.locator('#received').textContent())!.replace(/\D/g, ''));
    await expect.poll(received, { timeout: 10_000 }).toBeGreaterThan(0);
    const first = await received();
    await expect.poll(received, { timeout: 10_000 }).toBeGreaterThan(first);
    await expect
      .poll(async () => Number(await page.locator('#rate').getAttribute('data-value')), { timeout: 10_000 })
      .toBeGreaterThan(100);
    await expect.poll(() => page.locator('[data-service="mqtt"] .dot.ok').count(), { timeout: 5000 }).toBe(1);

    // 1,000 buildings: the table shows a capped, filterable slice
    await expect
      .poll(() => page.locator('#buildings-note').textContent(), { timeout: 10_000 })
      .toContain('of 1,000');
    await expect.poll(() => page.locator('#buildings tr').count(), { timeout: 5000 }).toBe(200);
    await page.locator('#filter').fill('building_0042');
    await expect.poll(() => page.locator('#buildings tr').count(), { timeout: 5000 }).toBe(0);
    await page.locator('#filter').fill('building_042');
    await expect.poll(() => page.locator('#buildings tr').count(), { timeout: 5000 }).toBe(1);
    await page.locator('#filter').fill('');

    // a threshold crossing: the alert appears live (MQTT over WebSocket) and clears
    await expect
      .poll(() => page.locator('#alerts-source').textContent(), { timeout: 10_000 })
      .toBe('live (MQTT)');
    await mosquittoPub(daemon.mqttPort, 'sensors/building_001/B1/server/temperature', '{"value": 41.5}');
    await mosquittoPub(daemon.mqttPort, 'sensors/building_002/B1/server/power', '{"value": 9800}');
    const row = page.locator('#alerts tr[data-rule="server-room-hot"]');
    await expect.poll(() => row.count(), { timeout: 5000 }).toBe(1);
    expect(await row.textContent()).toContain('Temperature exceeded the threshold');
    await expect.poll(() => page.locator('#alerts-count').textContent()).toBe('2');
    await page.waitForTimeout(6000); // some chart for the screenshot
    mkdirSync(join(ROOT, 'docs'), { recursive: true });
    await page.screenshot({ path: join(ROOT, 'docs', 'status-page.png'), fullPage: false });

    await mosquittoPub(daemon.mqttPort, 'sensors/building_001/B1/server/temperature', '{"value": 30}');
    await expect.poll(() => row.count(), { timeout: 5000 }).toBe(0);
    await expect.poll(() => page.locator('#alerts-count').textContent()).toBe('1');

    // Korean, and a page opened later still sees the active alert (retained)
    await page.locator('button[data-lang="ko"]').click();
    await expect.poll(() => page.locator('[data-i18n="rate"]').textContent()).toBe('초당 수신 측정값');
    const late = await browser.newPage();
    await late.goto(`http://127.0.0.1:${daemon.httpPort}/?lang=ko`);
    await expect
      .poll(() => late.locator('#alerts tr[data-rule="power-peak"]').count(), { timeout: 10_000 })
      .toBe(1);
    expect(await late.locator('#alerts-empty').isVisible()).toBe(false);
    expect(errors).toEqual([]);
  }, 90_000);
});

describe('status page with anonymous access off', () => {
  it('asks for a dashboard login, then shows alerts by polling when the broker refuses the anonymous browser', async () => {
    const url = await freshDatabase(inject('postgresUrl'), 'status_page_auth');
    await migrate(url);
    const env = { ...process.env, DATABASE_URL: url };
    execFileSync('node', [BIN, 'passwd', 'ops', '--role', 'dashboard'], { env, input: 'ops-pass\n' });
    execFileSync('node', [BIN, 'passwd', 'gw', '--role', 'sensor'], { env, input: 'gw-password\n' });
    const cfg = join(tempDir('status-auth-cfg'), 'config.yaml');
    writeFileSync(cfg, 'alerts:\n  rules:\n    - { id: hot, sensor_type: temperature, above: 30 }\n');
    const d = await spawnDaemon({
      DATA_DIR: tempDir('status-auth'),
      DATABASE_URL: url,
      ALLOW_ANONYMOUS: 'false',
      ENERGY_INGEST_CONFIG: cfg,
    });
    try {
      expect((await fetch(`http://127.0.0.1:${d.httpPort}/`)).status).toBe(401);
      const ctx = await browser.newContext({ httpCredentials: { username: 'ops', password: 'ops-pass' } });
      const page = await ctx.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`http://127.0.0.1:${d.httpPort}/?lang=ko`);
      await expect
        .poll(() => page.locator('#alerts-source').textContent(), { timeout: 10_000 })
        .toBe('주기 조회');
      await mosquittoPub(d.mqttPort, 'sensors/1/1F/lab/temperature', '{"value": 33}', 1, [
        '-u',
        'gw',
        '-P',
        'gw-password',
      ]);
      await expect
        .poll(() => page.locator('#alerts tr[data-rule="hot"]').count(), { timeout: 10_000 })
        .toBe(1);
      // the Korean message the daemon wrote (alerts.locale defaults to ko)
      expect(await page.locator('#alerts tr[data-rule="hot"]').textContent()).toContain(
        '온도가 임계치를 초과했습니다',
      );
      await mosquittoPub(d.mqttPort, 'sensors/1/1F/lab/temperature', '{"value": 20}', 1, [
        '-u',
        'gw',
        '-P',
        'gw-password',
      ]);
      await expect.poll(() => page.locator('#alerts tr').count(), { timeout: 10_000 }).toBe(0);
      expect(errors).toEqual([]);
      await ctx.close();
    } finally {
      d.child.kill('SIGTERM');
      await d.exited;
    }
  }, 60_000);
});
