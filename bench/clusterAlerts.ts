import { Redis } from 'ioredis';
import { pino } from 'pino';
import { AlertCluster, type ClusterHost } from '../src/alerts/clusterState.js';
import type { Reading } from '../src/ingest/reading.js';

/**
 * Alerts in a cluster, in process (issue 14 item 8): what a CLUSTER_MODE=redis
 * node's AlertCluster costs for series it keeps receiving: `series` series with
 * alert rules, one reading each per second for `seconds` seconds (real time),
 * against a real Redis. Every series is claimed once, then its lease is
 * re-asserted every REFRESH_MS (5 s). Returns this process's CPU per reading
 * (admit + lease refreshes; Redis's own CPU not included) and the refresh
 * round trips per second.
 */
export async function alertClusterCost(
  redisUrl: string,
  series = 10_000,
  seconds = 20,
  refreshMs?: number,
): Promise<{
  usPerReading: number;
  commandsPerS: number;
  claimsPerS: number;
  outcomes: Record<string, number>;
}> {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  const stats = new Redis(redisUrl);
  let claims = 0;
  const outcomes: Record<string, number> = {};
  const host: ClusterHost = {
    ruleIds: () => ['high', 'low'],
    evaluateNow: () => {},
    adopt: () => {},
    clearInstead: () => {},
    forget: () => {},
    deliverMqtt: () => {},
  };
  const cluster = new AlertCluster({
    redis,
    nodeId: 'bench-a',
    log: pino({ level: 'silent' }),
    host,
    counters: {
      claims: (o) => {
        claims++;
        outcomes[o] = (outcomes[o] ?? 0) + 1;
      },
      gate: () => {},
      pendingDropped: () => {},
    },
    maxPending: 64,
    maxSeries: 1_000_000,
    refreshMs,
  });
  cluster.start();
  const readings: Reading[] = Array.from({ length: series }, (_, i) => ({
    buildingId: (i % 10) + 1,
    building: `building_${String((i % 10) + 1).padStart(3, '0')}`,
    floor: String(Math.floor(i / 10) % 10),
    room: `room_${Math.floor(i / 100)}`,
    sensorType: 'temperature',
    value: 21,
    unit: 'celsius',
    status: 'normal',
    extra: [],
    timestampMs: 0,
  }));
  // real time: readings of the second spread over it (20 batches of 1/20th, 50 ms apart), as a
  // node receives them, so the leases fall due and are re-asserted as they would be
  const tick = async () => {
    const start = Date.now();
    for (let b = 0; b < 20; b++) {
      const at = Date.now();
      for (let j = b; j < series; j += 20) cluster.admit(readings[j]!, at);
      const next = start + (b + 1) * 50;
      await new Promise((r) => setTimeout(r, Math.max(0, next - Date.now())));
    }
  };
  await tick();
  await redis.ping(); // first claims answered: not what a node pays while it keeps its series
  claims = 0;
  const before = Number(/total_commands_processed:(\d+)/.exec(await stats.info('stats'))?.[1]);
  const cpu0 = process.cpuUsage();
  for (let s = 1; s <= seconds; s++) await tick();
  await new Promise((r) => setTimeout(r, 500)); // the last refreshes answered
  const cpu = process.cpuUsage(cpu0);
  const after = Number(/total_commands_processed:(\d+)/.exec(await stats.info('stats'))?.[1]);
  cluster.stop();
  redis.disconnect();
  stats.disconnect();
  const us = (cpu.user + cpu.system) / (series * seconds);
  return {
    usPerReading: Math.round(us * 100) / 100,
    commandsPerS: Math.round((after - before - 1) / seconds),
    claimsPerS: Math.round(claims / seconds),
    outcomes,
  };
}

if (process.argv[1]?.endsWith('clusterAlerts.js') && process.argv[2]) {
  const refresh = process.argv[3] ? Number(process.argv[3]) : undefined;
  console.log(JSON.stringify(await alertClusterCost(process.argv[2], 10_000, 20, refresh)));
}
