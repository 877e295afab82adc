import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startApp, type TestApp } from '../helpers/app.js';
import { eventually } from '../helpers/services.js';

// The HTTP surface of contract section 10 against a running daemon with Redis.

let t: TestApp;
beforeAll(async () => {
  t = await startApp({ REDIS_URL: `${inject('redisUrl')}/8` });
  const c = await mqtt.connectAsync(t.mqttUrl, { protocolVersion: 4 });
  await c.publishAsync('sensors/building_007/1F/a/power', '{"value": 1200}', { qos: 1 });
  await c.publishAsync('sensors/building_007/1F/a/power', 'not json', { qos: 1 });
  await c.endAsync();
});
afterAll(async () => {
  await t?.stop();
});

const get = (path: string) => fetch(`${t.httpUrl}${path}`);

describe('HTTP endpoints', () => {
  it('/health and /ready have the contract shape', async () => {
    expect(await (await get('/health')).json()).toEqual({ status: 'ok' });
    const res = await get('/ready');
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      status: string;
      checks: Record<string, { ok: boolean; latency_ms?: number }>;
      log: Record<string, number>;
    };
    expect(body.status).toBe('ready');
    expect(body.checks.mqtt!.ok).toBe(true);
    expect(body.checks.redis).toMatchObject({ ok: true, latency_ms: expect.any(Number) });
    expect(body.log).toEqual({ bytes: expect.any(Number), oldest_unsent_age_s: expect.any(Number) });
  });

  it('/metrics: prom-client text with every metric the contract names, all prefixed, bounded labels', async () => {
    const res = await get('/metrics');
    expect(res.headers.get('content-type')).toContain('text/plain');
    const text = await res.text();
    for (const name of [
      'energy_ingest_messages_received_total',
      'energy_ingest_messages_rejected_total{reason="bad_json"}',
      'energy_ingest_points_written_total',
      'energy_ingest_write_errors_total',
      'energy_ingest_log_bytes',
      'energy_ingest_connected_clients',
      'energy_ingest_alerts_total',
      'energy_ingest_write_duration_seconds_bucket{le="0.005"}',
      'energy_ingest_ingest_latency_seconds_count',
      'energy_ingest_batch_size_points_bucket',
      'energy_ingest_dead_lettered_total 1',
      'energy_ingest_metadata_age_seconds',
      'energy_ingest_log_oldest_unsent_age_seconds',
      'energy_ingest_process_resident_memory_bytes',
      'energy_ingest_nodejs_eventloop_lag_seconds',
    ])
      expect(text).toContain(name);
    const samples = text.split('\n').filter((l) => l && !l.startsWith('#'));
    expect(samples.every((l) => l.startsWith('energy_ingest_'))).toBe(true);
    // no topic or client id ever becomes a label value
    expect(text).not.toContain('building_007');
    await eventually(async () => {
      const m = await (await get('/metrics')).text();
      return /^energy_ingest_points_written_total 1$/m.test(m);
    });
  });

  it('/api/status, /api/latest, /api/alerts/active, / and its asset', async () => {
    const status = (await (await get('/api/status')).json()) as Record<string, unknown>;
    expect(status).toMatchObject({ messages_received: 2, messages_rejected: 1, alerts_active: 0 });
    expect((status.ready as { status: string }).status).toBe('ready');
    const latest = (await (await get('/api/latest')).json()) as { buildings: Array<Record<string, unknown>> };
    expect(latest.buildings).toEqual([
      expect.objectContaining({
        building_id: 'building_007',
        readings: 1,
        sensors: { power: expect.objectContaining({ value: 1200, unit: 'W', floor: '1F', room: 'a' }) },
      }),
    ]);
    expect(await (await get('/api/alerts/active')).json()).toEqual({ count: 0, alerts: [] });
    expect((await get('/api/alerts/active?building_id=nope')).status).toBe(400);
    const page = await get('/');
    expect(page.headers.get('content-type')).toContain('text/html');
    expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
    const html = await page.text();
    expect(html).toContain('<script src="/assets/mqtt.min.js"></script>');
    expect(html).not.toMatch(/https?:\/\/(?!127)/); // no CDN
    const asset = await get('/assets/mqtt.min.js');
    expect(asset.status).toBe(200);
    expect((await asset.text()).length).toBeGreaterThan(100_000);
    // the page's own script and style (no inline ones: see tests/e2e/browser-attacks.test.ts)
    expect(html).toContain('<script src="/assets/status.js"></script>');
    for (const [path, type] of [
      ['/assets/status.js', 'application/javascript'],
      ['/assets/status.css', 'text/css'],
    ] as const) {
      const r = await get(path);
      expect(r.status, path).toBe(200);
      expect(r.headers.get('content-type'), path).toContain(type);
    }
    expect((await get('/nope')).status).toBe(404);
  });
});
