import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  AlertCluster,
  type ClusterHost,
  MOVED_CHANNEL,
  type RuleAt,
  seriesKey,
} from '../../src/alerts/clusterState.js';
import type { AlertEvent } from '../../src/alerts/evaluator.js';
import type { Reading } from '../../src/ingest/reading.js';
import { aReading } from '../helpers/reading.js';
import { eventually, type RestartableService, startRedis } from '../helpers/services.js';

// The ownership and gate logic of alerts in a cluster (src/alerts/clusterState.ts)
// against a real Redis: claims, take-overs and their notices, the atomic
// raise/clear gate under races, stale events, and a Redis outage.

let server: RestartableService;
let check: Redis;
const clients: Redis[] = [];

beforeAll(async () => {
  server = await startRedis();
  check = new Redis(server.url, { maxRetriesPerRequest: 1, retryStrategy: () => 100 });
  check.on('error', () => {});
});
afterAll(async () => {
  for (const c of clients) c.disconnect();
  check.disconnect();
  await server.stop();
});
beforeEach(async () => {
  await check.flushall();
});
/** every node a test made stops, even when the test failed */
const started: AlertCluster[] = [];
afterEach(() => {
  for (const c of started.splice(0)) c.stop();
});

async function client(): Promise<Redis> {
  const c = new Redis(server.url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    retryStrategy: () => 100,
  });
  c.on('error', () => {});
  await c.connect();
  clients.push(c);
  return c;
}

/** a host that records what the cluster asks of the alert service */
class Host implements ClusterHost {
  evaluated: number[] = [];
  adopted: Array<{ rule: string; id: string | null }> = [];
  forgotten: string[] = [];
  mqtt: AlertEvent[] = [];
  insteadOf: Array<{ clear: string; episode: string }> = [];
  keepAnswers: boolean[] = [];
  local: AlertEvent | null = null;
  ruleIds(): string[] {
    return ['warn'];
  }
  evaluateNow(readings: ReadonlyArray<readonly [Reading, number]>): void {
    for (const [r] of readings) this.evaluated.push(r.value);
  }
  adopt(at: RuleAt, event: AlertEvent | null, keep?: (local: AlertEvent) => boolean): void {
    if (this.local && keep) this.keepAnswers.push(keep(this.local));
    this.adopted.push({ rule: at.rule_id, id: event?.id ?? null });
  }
  forget(b: string, f: string, r: string, t: string): void {
    this.forgotten.push(seriesKey(b, f, r, t));
  }
  deliverMqtt(events: readonly AlertEvent[]): void {
    this.mqtt.push(...events);
  }
  clearInstead(clear: AlertEvent, episode: AlertEvent): void {
    this.insteadOf.push({ clear: clear.id, episode: episode.id });
  }
}

const gateVerdicts = (log: string[]) => ({
  claims: (o: string) => log.push(`claim:${o}`),
  gate: (v: string) => log.push(`gate:${v}`),
  pendingDropped: () => log.push('pending-dropped'),
});

async function node(id: string, opts: { maxPending?: number; refreshMs?: number } = {}) {
  const host = new Host();
  const log: string[] = [];
  const cluster = new AlertCluster({
    redis: await client(),
    nodeId: id,
    log: pino({ level: 'silent' }),
    host,
    counters: gateVerdicts(log),
    maxPending: opts.maxPending ?? 64,
    maxSeries: 1000,
    refreshMs: opts.refreshMs,
  });
  cluster.start();
  started.push(cluster);
  return { cluster, host, log };
}

const READING = { building: 'building_001', buildingId: 1, floor: '1F', room: 'r1', sensorType: 'power' };
const reading = (value: number): Reading => aReading({ ...READING, value, unit: 'W' });
const FIELD = '1F/r1/power/warn';
const OWNER = 'cluster:alerts:owner:building_001/1F/r1/power';

function event(id: string, state: 'raised' | 'cleared', value = 6000): AlertEvent {
  return {
    id,
    type: 'energy_alert',
    state,
    rule_id: 'warn',
    severity: 'warning',
    building_id: 'building_001',
    floor: '1F',
    room: 'r1',
    sensor_type: 'power',
    value,
    threshold: 5000,
    unit: 'W',
    message: 'm',
    timestamp: '2026-01-01T00:00:00.000Z',
    raised_at: '2026-01-01T00:00:00.000Z',
    cleared_at: state === 'cleared' ? '2026-01-01T00:00:01.000Z' : null,
  };
}

describe('series ownership', () => {
  it('the first reading claims the series; its readings wait for the claim and are then evaluated in order', async () => {
    const a = await node('node-a');
    expect(a.cluster.admit(reading(1), Date.now())).toBe(false);
    expect(a.cluster.admit(reading(2), Date.now())).toBe(false);
    await eventually(async () => a.host.evaluated.length === 2, 5000, 'pending evaluated');
    expect(a.host.evaluated).toEqual([1, 2]);
    expect(a.log).toContain('claim:new');
    // the cluster's state (none) was read for each rule of the series
    expect(a.host.adopted).toEqual([{ rule: 'warn', id: null }]);
    expect(await check.get(OWNER)).toBe('node-a');
    const ttl = await check.pttl(OWNER);
    expect(ttl).toBeGreaterThan(50_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
    // owned now: evaluated at once, no Redis call per reading
    expect(a.cluster.admit(reading(3), Date.now())).toBe(true);
    a.cluster.stop();
  });

  it('beyond alerts.clusterMaxPending readings waiting for a claim are counted, not held', async () => {
    const a = await node('node-a', { maxPending: 2 });
    for (let i = 0; i < 5; i++) a.cluster.admit(reading(i), Date.now());
    expect(a.log.filter((l) => l === 'pending-dropped')).toHaveLength(3);
    await eventually(async () => a.host.evaluated.length === 2, 5000, 'pending evaluated');
    a.cluster.stop();
  });

  it('a take-over: the new node reads the active episode; the old one is told and forgets the series', async () => {
    const a = await node('node-a');
    const b = await node('node-b');
    a.cluster.admit(reading(6000), Date.now());
    await eventually(async () => (await check.get(OWNER)) === 'node-a', 5000, 'claimed by A');
    await check.hset('alerts:active:building_001', FIELD, JSON.stringify(event('ep1', 'raised')));
    const notices: string[] = [];
    const sub = new Redis(server.url);
    sub.on('error', () => {});
    sub.on('message', (_c, m) => notices.push(m));
    await sub.subscribe(MOVED_CHANNEL);

    b.cluster.admit(reading(6100), Date.now());
    await eventually(async () => b.host.evaluated.length === 1, 5000, 'B evaluated');
    expect(b.log).toContain('claim:moved');
    // B continues the episode raised by A before it evaluates the reading
    expect(b.host.adopted).toEqual([{ rule: 'warn', id: 'ep1' }]);
    expect(await check.get(OWNER)).toBe('node-b');
    await eventually(async () => a.host.forgotten.length === 1, 5000, 'A forgot the series');
    expect(a.host.forgotten).toEqual(['building_001/1F/r1/power']);
    expect(JSON.parse(notices[0]!)).toEqual({
      series: 'building_001/1F/r1/power',
      from: 'node-a',
      to: 'node-b',
    });
    // A no longer holds it: its next reading claims it again (and B is told)
    expect(a.cluster.admit(reading(6200), Date.now())).toBe(false);
    await eventually(async () => b.host.forgotten.length === 1, 5000, 'B forgot the series');
    sub.disconnect();
    a.cluster.stop();
    b.cluster.stop();
  });

  it("a notice older than this node's own newer claim (it took the series back) is ignored", async () => {
    const a = await node('node-a');
    a.cluster.admit(reading(1), Date.now());
    await eventually(async () => a.host.evaluated.length === 1, 5000, 'claimed by A');
    // A's subscriber connection (its own, subscribed on connect) may lag its claim: an event of a
    // building A does not hold, once followed, shows it is listening (a subscriber count could
    // still include a previous test's closing connection)
    const other = (id: string) =>
      check.publish(
        'alerts:building_009',
        JSON.stringify({ ...event(id, 'raised'), building_id: 'building_009' }),
      );
    await eventually(
      async () => {
        await other('probe');
        return a.host.adopted.some((x) => x.id === 'probe');
      },
      10_000,
      "A's subscriber listening",
    );
    // B's take-over notice arrives after A has already claimed the series back
    const patterns = await check.publish(
      MOVED_CHANNEL,
      JSON.stringify({ series: 'building_001/1F/r1/power', from: 'node-a', to: 'node-b' }),
    );
    expect(patterns).toBeGreaterThan(0);
    // one connection delivers in order: once a later event is followed, the notice was handled
    await other('after');
    await eventually(async () => a.host.adopted.some((x) => x.id === 'after'), 5000, 'notice handled');
    await new Promise((r) => setTimeout(r, 500));
    expect(a.host.forgotten).toEqual([]);
    expect(a.cluster.admit(reading(2), Date.now())).toBe(true);
  });

  it('the lease is refreshed at most every refreshMs, and a missed take-over is noticed then', async () => {
    const a = await node('node-a', { refreshMs: 2000 });
    a.cluster.admit(reading(1), Date.now());
    await eventually(async () => a.host.evaluated.length === 1, 5000, 'claimed');
    // another node took it while A missed the notice
    await check.set(OWNER, 'node-z');
    await check.hset('alerts:active:building_001', FIELD, JSON.stringify(event('ep9', 'raised')));
    expect(a.cluster.admit(reading(2), Date.now())).toBe(true); // within refreshMs: no Redis call
    expect(await check.get(OWNER)).toBe('node-z');
    await new Promise((r) => setTimeout(r, 2100));
    expect(a.cluster.admit(reading(3), Date.now())).toBe(true);
    await eventually(async () => (await check.get(OWNER)) === 'node-a', 5000, 'refreshed');
    await eventually(async () => a.host.adopted.some((x) => x.id === 'ep9'), 5000, 'resynced');
    expect(a.log).toContain('claim:moved');
    a.cluster.stop();
  });
});

describe('lease refreshes', () => {
  /** script calls Redis has run so far (EVALSHA, and EVAL when it did not know a script yet) */
  const scriptCalls = async () => {
    const stats = await check.info('commandstats');
    let n = 0;
    for (const m of stats.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)) n += Number(m[1]);
    return n;
  };

  it('leases falling due together are re-asserted by one script, not one per series', async () => {
    const a = await node('node-a', { refreshMs: 500 });
    const N = 50;
    const rs = Array.from({ length: N }, (_, i) =>
      aReading({ ...READING, room: `r${i}`, value: i, unit: 'W' }),
    );
    for (const r of rs) a.cluster.admit(r, Date.now());
    await eventually(async () => a.host.evaluated.length === N, 5000, 'claimed');
    const before = await scriptCalls();
    await new Promise((r) => setTimeout(r, 600));
    const at = Date.now();
    for (const r of rs) expect(a.cluster.admit(r, at)).toBe(true);
    await eventually(
      async () => a.log.filter((x) => x === 'claim:refresh').length === N,
      5000,
      'every lease refreshed',
    );
    // before: 50 claim scripts (one per series); now one (two if Redis had to be sent the script)
    expect((await scriptCalls()) - before).toBeLessThanOrEqual(2);
    for (const r of rs) {
      const key = `cluster:alerts:owner:${seriesKey(r.building, r.floor, r.room, r.sensorType)}`;
      expect(await check.get(key)).toBe('node-a');
      expect(await check.pttl(key)).toBeGreaterThan(50_000); // the lease is 60 s again
    }
    expect(a.log.filter((x) => x !== 'claim:new' && x !== 'claim:refresh')).toEqual([]);
  });

  it('a series taken meanwhile by another node gets a full claim at its refresh (taken back, state read)', async () => {
    const a = await node('node-a', { refreshMs: 300 });
    a.cluster.admit(reading(1), Date.now());
    await eventually(async () => a.host.evaluated.length === 1, 5000, 'claimed');
    await check.set(OWNER, 'node-z');
    await check.hset('alerts:active:building_001', FIELD, JSON.stringify(event('ep7', 'raised')));
    await new Promise((r) => setTimeout(r, 400));
    a.cluster.admit(reading(2), Date.now());
    await eventually(async () => a.host.adopted.some((x) => x.id === 'ep7'), 5000, 'state read');
    expect(await check.get(OWNER)).toBe('node-a');
    expect(a.log).toContain('claim:moved');
  });
});

describe("other nodes' events", () => {
  it('the active state of series held elsewhere follows PUBLISH alerts:{building_id}; held ones ignore it', async () => {
    const patterns = Number(await check.pubsub('NUMPAT'));
    const a = await node('node-a');
    await eventually(
      async () => Number(await check.pubsub('NUMPAT')) > patterns,
      5000,
      'subscribed to the alert channels',
    );
    await check.publish('alerts:building_001', JSON.stringify(event('far1', 'raised')));
    await eventually(async () => a.host.adopted.length === 1, 5000, 'raise followed');
    await check.publish('alerts:building_001', JSON.stringify(event('far1', 'cleared', 100)));
    await eventually(async () => a.host.adopted.length === 2, 5000, 'clear followed');
    expect(a.host.adopted).toEqual([
      { rule: 'warn', id: 'far1' },
      { rule: 'warn', id: null },
    ]);
    // once the series is held here, the echo changes nothing
    a.cluster.admit(reading(1), Date.now());
    await eventually(async () => a.host.evaluated.length === 1, 5000, 'claimed');
    const before = a.host.adopted.length;
    await check.publish('alerts:building_001', JSON.stringify(event('far2', 'raised')));
    await check.publish('alerts:building_002', 'not json');
    await new Promise((r) => setTimeout(r, 300));
    expect(a.host.adopted.length).toBe(before);
    a.cluster.stop();
  });
});

describe('the raise/clear gate', () => {
  const streamIds = async () =>
    (await check.xrange('alerts:stream', '-', '+')).map(([, f]) => {
      const e = JSON.parse(f[1]!) as AlertEvent;
      return `${e.state}:${e.id}`;
    });

  it('two nodes raising the same episode at once: one raise cluster-wide, the other continues it', async () => {
    for (let round = 0; round < 20; round++) {
      await check.flushall();
      const a = await node('node-a');
      const b = await node('node-b');
      const ea = event(`a${round}`, 'raised');
      const eb = event(`b${round}`, 'raised');
      a.cluster.tag(ea);
      b.cluster.tag(eb);
      await Promise.all([a.cluster.send([ea]), b.cluster.send([eb])]);
      const ids = await streamIds();
      expect(ids).toHaveLength(1);
      const winner = ids[0]!.slice('raised:'.length);
      const [w, l] = winner === ea.id ? [a, b] : [b, a];
      expect(w.host.mqtt.map((e) => e.id)).toEqual([winner]);
      expect(l.host.mqtt).toEqual([]);
      // the loser continues the winner's episode (from the gate's answer, and maybe the PUBLISH echo too)
      expect(l.host.adopted.length).toBeGreaterThan(0);
      expect(new Set(l.host.adopted.map((x) => x.id))).toEqual(new Set([winner]));
      expect(JSON.parse((await check.hget('alerts:active:building_001', FIELD))!).id).toBe(winner);
      a.cluster.stop();
      b.cluster.stop();
    }
  });

  it('a clear ends only the active episode; a retried raise is not delivered to Redis twice', async () => {
    const a = await node('node-a');
    const r = event('e1', 'raised');
    a.cluster.tag(r);
    await a.cluster.send([r]);
    // the same event again (a retried batch whose answer was lost)
    const again = { ...r };
    a.cluster.tag(again);
    await a.cluster.send([again]);
    expect(a.log.filter((l) => l.startsWith('gate:'))).toEqual(['gate:ok', 'gate:dup']);
    const wrong = event('other', 'cleared', 100);
    a.cluster.tag(wrong);
    await a.cluster.send([wrong]);
    expect(a.log).toContain('gate:absent');
    const clear = event('e1', 'cleared', 100);
    a.cluster.tag(clear);
    await a.cluster.send([clear]);
    expect(await streamIds()).toEqual(['raised:e1', 'cleared:e1']);
    expect(await check.hlen('alerts:active:building_001')).toBe(0);
    a.cluster.stop();
  });

  it('a node that lost the series is refused (not_owner) and forgets it: it never reports it offline', async () => {
    const a = await node('node-a');
    await check.set(OWNER, 'node-b');
    const offline: AlertEvent = { ...event('off1', 'raised'), type: 'sensor_offline', rule_id: 'warn' };
    a.cluster.tag(offline);
    await a.cluster.send([offline]);
    expect(a.log).toContain('gate:not_owner');
    expect(a.host.forgotten).toEqual(['building_001/1F/r1/power']);
    expect(a.host.mqtt).toEqual([]);
    expect(await streamIds()).toEqual([]);
    a.cluster.stop();
  });

  it('an event of a series claimed anew since it was emitted is stale: never delivered', async () => {
    const a = await node('node-a');
    const b = await node('node-b');
    a.cluster.admit(reading(1), Date.now());
    await eventually(async () => a.host.evaluated.length === 1, 5000, 'claimed by A');
    const e = event('old', 'raised');
    a.cluster.tag(e);
    b.cluster.admit(reading(2), Date.now());
    await eventually(async () => a.host.forgotten.length === 1, 5000, 'A lost it');
    await a.cluster.send([e]);
    expect(a.log).toContain('gate:stale');
    expect(await streamIds()).toEqual([]);
    a.cluster.stop();
    b.cluster.stop();
  });

  it('the clear of a raise that lost a race ends the episode that won', async () => {
    const a = await node('node-a');
    await check.hset('alerts:active:building_001', FIELD, JSON.stringify(event('won', 'raised')));
    const raise = event('lost', 'raised');
    const clear = event('lost', 'cleared', 100);
    a.cluster.tag(raise);
    a.cluster.tag(clear);
    await a.cluster.send([raise, clear]);
    expect(a.host.adopted).toEqual([{ rule: 'warn', id: 'won' }]);
    expect(a.host.insteadOf).toEqual([{ clear: 'lost', episode: 'won' }]);
    a.cluster.stop();
  });

  it('a claim keeps what this node emitted and the gate has not answered yet', async () => {
    const a = await node('node-a');
    const pending = event('mine', 'raised');
    a.cluster.tag(pending);
    a.host.local = pending;
    a.cluster.admit(reading(1), Date.now());
    await eventually(async () => a.host.evaluated.length === 1, 5000, 'claimed');
    expect(a.host.keepAnswers).toEqual([true]);
    // answered now: a later claim (here after a take-over and back) reads it from Redis instead
    await a.cluster.send([pending]);
    const b = await node('node-b');
    b.cluster.admit(reading(2), Date.now());
    await eventually(async () => a.host.forgotten.length === 1, 5000, 'A lost it');
    a.host.keepAnswers = [];
    a.cluster.admit(reading(3), Date.now());
    await eventually(async () => a.host.evaluated.length === 2, 5000, 'claimed again');
    expect(a.host.keepAnswers).toEqual([false]);
    a.cluster.stop();
    b.cluster.stop();
  });

  it('Redis down: readings are evaluated locally at once, events reach MQTT once, and Redis when it is back', async () => {
    const a = await node('node-a');
    await server.crash();
    const t0 = Date.now();
    a.cluster.admit(reading(6000), Date.now());
    await eventually(async () => a.host.evaluated.length === 1, 5000, 'evaluated without Redis');
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(a.log).toContain('claim:failed');
    const e = event('down1', 'raised');
    a.cluster.tag(e);
    await expect(a.cluster.send([e])).rejects.toThrow();
    expect(a.host.mqtt.map((x) => x.id)).toEqual(['down1']);
    await server.restart();
    await eventually(
      async () => {
        await a.cluster.send([e]);
        return true;
      },
      15_000,
      'delivered after recovery',
    );
    expect(await streamIds()).toEqual(['raised:down1']);
    // not delivered on MQTT a second time
    expect(a.host.mqtt.map((x) => x.id)).toEqual(['down1']);
    a.cluster.stop();
  });
});
