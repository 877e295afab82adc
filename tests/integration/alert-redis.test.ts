import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AlertEvent } from '../../src/alerts/evaluator.js';
import { AlertRedisOutput } from '../../src/alerts/redisOutput.js';
import { Metrics } from '../../src/metrics.js';
import { fullJitterBackoff } from '../../src/retry.js';
import { eventually, type RestartableService, startRedis } from '../helpers/services.js';

// The Redis alert output against a real Redis that goes away: a bounded
// queue, drops counted, and the active hash repaired from the live state.

let server: RestartableService;
let client: Redis;
let check: Redis;
beforeAll(async () => {
  server = await startRedis();
  client = new Redis(server.url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    retryStrategy: () => 100,
  });
  client.on('error', () => {});
  await client.connect();
  check = new Redis(server.url, { maxRetriesPerRequest: 1, retryStrategy: () => 100 });
  check.on('error', () => {});
});
afterAll(async () => {
  client.disconnect();
  check.disconnect();
  await server.stop();
});

function event(room: string, state: 'raised' | 'cleared', id: string): AlertEvent {
  return {
    id,
    type: 'energy_alert',
    state,
    rule_id: 'r',
    severity: 'warning',
    building_id: 'building_001',
    floor: '1F',
    room,
    sensor_type: 'power',
    value: 1,
    threshold: 0,
    unit: 'W',
    message: 'm',
    timestamp: '2026-01-01T00:00:00.000Z',
    raised_at: '2026-01-01T00:00:00.000Z',
    cleared_at: state === 'cleared' ? '2026-01-01T00:00:00.000Z' : null,
  };
}

describe('Redis alert output', () => {
  it('overflow while Redis is down: oldest events dropped and counted, active hash right once it is back', async () => {
    const metrics = new Metrics();
    // the live state: rooms 0..49 raised and still active, 50..99 raised then cleared
    const live = new Map<string, AlertEvent>();
    const out = new AlertRedisOutput({
      redis: client,
      metrics,
      log: pino({ level: 'silent' }),
      retry: fullJitterBackoff(50, 200),
      maxQueued: 100,
      activeEvent: (_b, field) => live.get(field) ?? null,
    });
    await server.crash();
    const events: AlertEvent[] = [];
    for (let i = 0; i < 100; i++) {
      const raised = event(`r${i}`, 'raised', `id${i}`);
      events.push(raised);
      if (i >= 50) events.push(event(`r${i}`, 'cleared', `id${i}`));
      else live.set(`1F/r${i}/power/r`, raised);
    }
    out.deliver(events); // 150 events into a queue of 100
    expect(metrics.alertDeliveryDropped.get({ output: 'redis' })).toBe(50);
    expect(out.queued).toBe(100);

    await server.restart();
    await eventually(async () => out.queued === 0, 15_000, 'queue delivered');
    await eventually(
      async () => (await check.hlen('alerts:active:building_001')) === 50,
      5000,
      'hash repaired',
    );
    const hash = await check.hgetall('alerts:active:building_001');
    expect(Object.keys(hash).sort()).toEqual([...live.keys()].sort());
    expect(JSON.parse(hash['1F/r0/power/r']!)).toMatchObject({ id: 'id0', state: 'raised' });
    // what was not dropped went out in order
    expect(await check.xlen('alerts:stream')).toBe(100);
    expect(metrics.alertDeliveryRetries.get({ output: 'redis' })).toBeGreaterThan(0);
    await out.stop(Date.now() + 1000);
  });
});
