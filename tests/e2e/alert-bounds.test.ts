import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AlertEvent } from '../../src/alerts/evaluator.js';
import { launchChromium } from '../helpers/browser.js';
import { type DaemonProcess, metricValue, spawnDaemon } from '../helpers/daemon.js';
import { eventually, tempDir } from '../helpers/services.js';

// Issue 11 item 9: 20,000 publishes to made-up rooms with an offline rule
// raised 20,000 alerts in seconds (heap 14 → 102 MiB, 8 MB /api/alerts/active)
// and froze the status page. Tracked series and active alerts per building are
// bounded (counted beyond), /api/alerts/active is paged, and the page renders
// one row per event with a row cap, staying responsive.

const ROOMS = 20_000;
const MAX_SERIES = 10_000;
const MAX_ACTIVE = 1000; // the default of alerts.maxActivePerBuilding

let daemon: DaemonProcess;
let browser: Browser;

beforeAll(async () => {
  const cfg = join(tempDir('bounds-cfg'), 'config.yaml');
  writeFileSync(
    cfg,
    `alerts:
  locale: en
  rules:
    - { id: room-silent, sensor_type: power, offline_after_seconds: 2, severity: warning }
`,
  );
  daemon = await spawnDaemon({
    DATA_DIR: tempDir('bounds-data'),
    ENERGY_INGEST_CONFIG: cfg,
    EI_ALERTS_MAX_SERIES: String(MAX_SERIES),
  });
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  daemon?.child.kill('SIGKILL');
  await daemon?.exited;
});

const heapUsed = async () => metricValue(await daemon.metrics(), 'energy_ingest_nodejs_heap_size_used_bytes');

describe('alerts and series under 20,000 made-up rooms', () => {
  it('bounds series and active alerts, pages /api/alerts/active, and the status page keeps up', async () => {
    const base = `http://127.0.0.1:${daemon.httpPort}`;
    const page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${base}/?lang=en`);
    await expect
      .poll(() => page.locator('#alerts-source').textContent(), { timeout: 15_000 })
      .toBe('live (MQTT)');
    const heapBefore = await heapUsed();

    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${daemon.mqttPort}`, { protocolVersion: 4 });
    // QoS 1 in windows of 500: every reading is accepted (no QoS 0 drop policy can blur the counts)
    for (let i = 0; i < ROOMS; i += 500) {
      const window = [];
      for (let j = i; j < i + 500; j++)
        window.push(
          client.publishAsync(`sensors/building_001/F1/made-up-${j}/power`, '{"value": 1}', { qos: 1 }),
        );
      await Promise.all(window);
    }

    // the offline rule fires ~2 s later for every tracked series: the page must stay responsive meanwhile
    let slowest = 0;
    const deadline = Date.now() + 8000;
    while (Date.now() < deadline) {
      const t0 = Date.now();
      // needs the page's main thread; the page that re-rendered every row per message froze here
      await Promise.race([
        page.evaluate(() => Date.now()),
        new Promise((_, reject) =>
          setTimeout(() => reject(new Error('the page did not answer within 10 s')), 10_000),
        ),
      ]);
      slowest = Math.max(slowest, Date.now() - t0);
      await new Promise((r) => setTimeout(r, 100));
    }
    const status = await eventually(
      async () => {
        const s = await daemon.status();
        return (s.alerts_active ?? 0) >= MAX_ACTIVE && s;
      },
      20_000,
      'offline alerts raised',
    );
    expect(status.alerts_active).toBe(MAX_ACTIVE);
    const m = await daemon.metrics();
    expect(metricValue(m, 'energy_ingest_series_untracked_total{table="alerts"}')).toBe(ROOMS - MAX_SERIES);
    expect(metricValue(m, 'energy_ingest_alerts_refused_total{reason="max_active_per_building"}')).toBe(
      MAX_SERIES - MAX_ACTIVE,
    );

    // /api/alerts/active: the total, one bounded page, and where the next starts
    const res = await fetch(`${base}/api/alerts/active`);
    const text = await res.text();
    expect(text.length).toBeLessThan(1024 * 1024);
    const body = JSON.parse(text) as { count: number; alerts: AlertEvent[]; next_offset?: number };
    expect(body.count).toBe(MAX_ACTIVE);
    expect(body.alerts.length).toBe(500);
    expect(body.next_offset).toBe(500);
    const rest = (await (
      await fetch(`${base}/api/alerts/active?offset=500&limit=1000`)
    ).json()) as typeof body;
    expect(rest.alerts.length).toBe(500);
    expect(rest.next_offset).toBeUndefined();
    expect((await fetch(`${base}/api/alerts/active?limit=0`)).status).toBe(400);
    expect((await fetch(`${base}/api/alerts/active?offset=-1`)).status).toBe(400);
    const ids = new Set([...body.alerts, ...rest.alerts].map((e) => e.id));
    expect(ids.size).toBe(MAX_ACTIVE);

    const heapAfter = await heapUsed();
    // before the bounds: +88 MiB for 20,000 alerts; heap used also holds the flood's garbage, hence the margin
    expect(heapAfter - heapBefore).toBeLessThan(80 * 1024 * 1024);

    // the page: a row cap with the rest counted, responsive, and updated within a deadline
    await expect.poll(() => page.locator('#alerts-count').textContent(), { timeout: 10_000 }).toBe('1000');
    expect(await page.locator('#alerts tr').count()).toBe(200);
    expect(await page.locator('#alerts-more').textContent()).toContain('800');
    expect(slowest).toBeLessThan(5000); // a loaded 2-core machine: the old page froze for much longer
    const cleared = body.alerts[0]!;
    await client.publishAsync(`sensors/building_001/F1/${cleared.room}/power`, '{"value": 1}', { qos: 1 });
    await expect.poll(() => page.locator('#alerts-count').textContent(), { timeout: 5000 }).toBe('999');
    expect(await page.locator(`#alerts tr[data-room="${cleared.room}"]`).count()).toBe(0);
    expect(await page.locator('#alerts tr').count()).toBe(200);
    expect(errors).toEqual([]);
    console.info(
      `alerts: ${status.alerts_active} active, heap +${((heapAfter - heapBefore) / 1048576).toFixed(1)} MiB, ` +
        `/api/alerts/active ${text.length} bytes, slowest page evaluate ${slowest} ms`,
    );
    await client.endAsync();
  }, 60_000);
});
