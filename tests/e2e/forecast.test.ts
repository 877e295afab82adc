import { spawn } from 'node:child_process';
import { get as httpGet } from 'node:http';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { backtest, backtestDays, predict } from '../../src/forecast/model.js';
import { migrate } from '../../src/metadata/migrations.js';
import { launchChromium } from '../helpers/browser.js';
import { type DaemonProcess, spawnDaemon } from '../helpers/daemon.js';
import { energyPattern } from '../helpers/energyPattern.js';
import {
  eventually,
  freshDatabase,
  type RestartableService,
  startRedis,
  tempDir,
} from '../helpers/services.js';

// Contract section 17 against real PostgreSQL and Redis: hourly power
// roll-ups → `energy-ingest forecast` and the forecast.cron job →
// forecast:{building_id} (shape, TTL) → GET /api/forecast/{id} → the status
// page's chart.

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'energy-ingest.js');
const HOUR = 3_600_000;
let dbUrl: string;
let db: pg.Client;
let redisServer: RestartableService;
let redis: Redis;
let daemon: DaemonProcess | undefined;
let browser: Browser | undefined;
/** the epoch hour the data was generated up to (exclusive): the forecast's first hour */
let current: number;
/** building → its generated kWh per hour, for the 672 hours before `current` and the 24 from it */
const truth = new Map<number, number[]>();

/** Roll-up rows as the daemon writes them: two power series sharing a building's kWh, plus a temperature row. */
async function insertHistory(building: number, hours: number): Promise<void> {
  const kwh = energyPattern(building, current - 672, 672 + 24);
  truth.set(building, kwh);
  const rows: unknown[][] = [];
  for (let i = 672 - hours; i < 672; i++) {
    const hour = new Date((current - 672 + i) * HOUR).toISOString().slice(0, 19).replace('T', ' ');
    const watts = kwh[i]! * 1000;
    // mean power 60% / 40% of the building's, 60 readings each: sum / count is the mean
    rows.push([building, '1F', 'a', 'power', hour, 60, watts * 0.6 * 60, 0, watts]);
    rows.push([building, '2F', 'b', 'power', hour, 60, watts * 0.4 * 60, 0, watts]);
    rows.push([building, '1F', 'a', 'temperature', hour, 60, 21 * 60, 20, 22]);
  }
  for (let i = 0; i < rows.length; i += 1000) {
    const chunk = rows.slice(i, i + 1000);
    await db.query(
      `INSERT INTO sensor_rollups_hourly (building_id, floor, room, sensor_type, hour, count, sum, min, max)
       SELECT * FROM unnest($1::int[], $2::varchar[], $3::varchar[], $4::varchar[], $5::timestamp[],
                            $6::bigint[], $7::float8[], $8::float8[], $9::float8[])`,
      Array.from({ length: 9 }, (_, k) => chunk.map((r) => r[k])),
    );
  }
}

function cli(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn('node', [BIN, 'forecast', ...args], {
      env: { ...process.env, DATABASE_URL: dbUrl, REDIS_URL: redisServer.url, LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (b) => {
      out += b;
    });
    child.stderr.on('data', (b) => {
      err += b;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 40_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

beforeAll(async () => {
  // not in the last minutes of an hour: the CLI must see the same "current hour" as the data
  const inHour = Date.now() % HOUR;
  if (inHour > HOUR - 150_000) await new Promise((r) => setTimeout(r, HOUR - inHour + 1000));
  current = Math.floor(Date.now() / HOUR);
  dbUrl = await freshDatabase(inject('postgresUrl'), 'forecast_e2e');
  await migrate(dbUrl);
  db = new pg.Client({ connectionString: dbUrl });
  await db.connect();
  redisServer = await startRedis();
  redis = new Redis(redisServer.url);
  // the status page lists the metadata's buildings
  await db.query(
    "INSERT INTO buildings (id, name, address) VALUES (1, '본관', '서울'), (2, '별관', '서울'), (3, '창고', '부산')",
  );
  await insertHistory(1, 672); // four weeks
  await insertHistory(2, 100); // too little: skipped
  await insertHistory(3, 200); // just over a week
}, 200_000);
afterAll(async () => {
  await browser?.close();
  if (daemon && daemon.child.exitCode === null) {
    daemon.child.kill('SIGTERM');
    await daemon.exited;
  }
  redis?.disconnect();
  await redisServer?.stop();
  await db?.end();
});

const KEYS = ['backtest', 'building_id', 'generated_at', 'horizon_hours', 'model', 'points'];

describe('energy forecasts (real PostgreSQL and Redis)', () => {
  it('energy-ingest forecast stores forecast:{building_id} in the contract shape, EX 7200; short histories are skipped', async () => {
    const t0 = Date.now();
    const r = await cli([]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const lines = r.out.trim().split('\n');
    expect(lines.find((l) => l.startsWith('building_001:'))).toMatch(/next 24 h [\d.]+ kWh/);
    expect(lines).toContain(
      'building_002: skipped, 100 h of power roll-ups (fewer than forecast.minHistoryHours)',
    );
    expect(lines.at(-1)).toMatch(/^forecast: 2 building\(s\) in \d+ ms, 1 skipped \(building_002\)$/);
    expect(await redis.exists('forecast:building_002')).toBe(0);

    const text = await redis.get('forecast:building_001');
    const f = JSON.parse(text!);
    expect(Object.keys(f).sort()).toEqual(KEYS);
    expect(f.building_id).toBe('building_001');
    expect(f.model).toBe('weekly_profile_level');
    expect(f.horizon_hours).toBe(24);
    expect(Date.parse(f.generated_at)).toBeGreaterThanOrEqual(t0 - 1000);
    expect(new Date(f.generated_at).toISOString()).toBe(f.generated_at);
    expect(f.points).toHaveLength(24);
    f.points.forEach((p: Record<string, unknown>, j: number) => {
      expect(Object.keys(p).sort()).toEqual(['high', 'hour', 'kwh', 'low']);
      expect(p.hour).toBe(new Date((current + j) * HOUR).toISOString());
      expect(p.low as number).toBeLessThanOrEqual(p.kwh as number);
      expect(p.high as number).toBeGreaterThanOrEqual(p.kwh as number);
    });
    expect(Object.keys(f.backtest).sort()).toEqual(['baseline', 'baseline_mape', 'hours', 'mape']);
    expect(f.backtest.baseline).toBe('seasonal_naive_24h');
    expect(f.backtest.hours).toBe(7 * 24);

    // the numbers are the model's on the kWh the roll-ups hold (mean W per series, summed, / 1000)
    const history = truth.get(1)!.slice(0, 672);
    const expected = predict({ startHour: current - 672, values: history }, 672, 24);
    f.points.forEach((p: { kwh: number }, j: number) => {
      expect(p.kwh).toBeCloseTo(expected[j]!.kwh, 2);
    });
    const bt = backtest({ startHour: current - 672, values: history }, backtestDays(672, 7));
    expect(f.backtest.mape).toBeCloseTo(bt.mape, 1);
    expect(f.backtest.baseline_mape).toBeCloseTo(bt.baselineMape, 1);
    expect(f.backtest.mape).toBeLessThan(f.backtest.baseline_mape);
    // and close to what actually came next in the generated pattern
    const next = truth.get(1)!.slice(672);
    const mape =
      f.points.reduce(
        (a: number, p: { kwh: number }, j: number) => a + Math.abs(p.kwh - next[j]!) / next[j]!,
        0,
      ) / 24;
    expect(mape).toBeLessThan(0.25);

    const ttl = await redis.ttl('forecast:building_001');
    expect(ttl).toBeGreaterThan(7200 - 60);
    expect(ttl).toBeLessThanOrEqual(7200);
    expect(JSON.parse((await redis.get('forecast:building_003'))!).backtest.hours).toBe(24);
  });

  it('--building forecasts one building; a bad id is a usage error', async () => {
    await redis.del('forecast:building_001', 'forecast:building_003');
    const one = await cli(['--building', '3']);
    expect(one.code).toBe(0);
    expect(one.out).toMatch(/^building_003: next 24 h/m);
    expect(one.out).toMatch(/^forecast: 1 building\(s\) in \d+ ms, 0 skipped$/m);
    expect(await redis.exists('forecast:building_003')).toBe(1);
    expect(await redis.exists('forecast:building_001')).toBe(0);
    const none = await cli(['--building', 'building_042']);
    expect(none.code).toBe(0);
    expect(none.out).toContain('building_042: skipped, 0 h of power roll-ups');
    const bad = await cli(['--building', 'nope']);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('--building');
  });

  it('the daemon runs forecast.cron, serves GET /api/forecast/{id} (404 when none) and charts it on the status page', async () => {
    await redis.del('forecast:building_001', 'forecast:building_003');
    daemon = await spawnDaemon({
      DATA_DIR: tempDir('forecast-daemon'),
      DATABASE_URL: dbUrl,
      REDIS_URL: redisServer.url,
      EI_FORECAST_CRON: '*/2 * * * * *', // node-cron's seconds field: every 2 s
    });
    const base = `http://127.0.0.1:${daemon.httpPort}`;
    const stored = await eventually(
      async () => (await redis.get('forecast:building_001')) ?? undefined,
      20_000,
      'the cron job stored a forecast',
    );
    expect(Object.keys(JSON.parse(stored)).sort()).toEqual(KEYS);
    expect(await redis.exists('forecast:building_002')).toBe(0);

    const ok = await fetch(`${base}/api/forecast/building_001`);
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-type')).toContain('application/json');
    const body = (await ok.json()) as { building_id: string };
    expect(Object.keys(body).sort()).toEqual(KEYS);
    expect(body.building_id).toBe('building_001');
    expect((await fetch(`${base}/api/forecast/3`)).status).toBe(200); // the bare id
    const missing = await fetch(`${base}/api/forecast/building_002`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ error: 'no forecast', building_id: 'building_002' });
    expect((await fetch(`${base}/api/forecast/not-a-building`)).status).toBe(400);
    expect((await fetch(`${base}/api/forecast/building_001/x`)).status).toBe(404);
    // the Host check of every /api route applies (DNS rebinding)
    const rebound = await new Promise<number>((resolve, reject) => {
      const req = httpGet(
        {
          host: '127.0.0.1',
          port: daemon!.httpPort,
          path: '/api/forecast/building_001',
          headers: { host: `rebind.attacker.example:${daemon!.httpPort}` },
          timeout: 10_000,
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.once('error', reject);
    });
    expect(rebound).toBe(421);

    const energy = (await (await fetch(`${base}/api/energy/building_001`)).json()) as {
      history: Array<{ hour: string; kwh: number }>;
      forecast: { points: unknown[] };
    };
    expect(energy.history).toHaveLength(48);
    expect(energy.history.at(-1)!.hour).toBe(new Date((current - 1) * HOUR).toISOString());
    expect(energy.history.at(-1)!.kwh).toBeCloseTo(truth.get(1)![671]!, 2);
    expect(energy.forecast.points).toHaveLength(24);

    browser = await launchChromium();
    const page = await browser.newPage();
    const violations: string[] = [];
    page.on('console', (m) => {
      if (/Content Security Policy|Refused/i.test(m.text())) violations.push(m.text());
    });
    await page.goto(`${base}/?building=building_001&lang=en`);
    await page.waitForSelector('#energy-chart svg path.fc', { timeout: 20_000 });
    expect(await page.locator('#energy-chart svg path.hist').count()).toBe(1);
    expect(await page.locator('#energy-chart svg polygon.band').count()).toBe(1);
    expect(await page.locator('#energy-note').textContent()).toMatch(
      /backtest MAPE [\d.]+% \(same hour yesterday [\d.]+%\)/,
    );
    // the README's picture of the chart (commit it when the chart changes)
    await page.setViewportSize({ width: 1100, height: 900 });
    await page.locator('section', { has: page.locator('#energy-chart') }).screenshot({
      path: join(import.meta.dirname, '..', '..', 'docs', 'energy-chart.png'),
    });
    await page.selectOption('#energy-building', 'building_002');
    await eventually(
      async () => (await page.locator('#energy-note').textContent())?.startsWith('no forecast'),
      20_000,
      'building_002 shown without a forecast',
    );
    expect(await page.locator('#energy-chart svg path.fc').count()).toBe(0);
    expect(violations).toEqual([]);
  }, 90_000);
});
