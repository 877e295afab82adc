import type { Aedes } from 'aedes';
import { Redis } from 'ioredis';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { batchHeader, encodeMessage } from '../../src/cluster/frame.js';
import { startApp, type TestApp } from '../helpers/app.js';
import { eventually, type RestartableService, startRedis } from '../helpers/services.js';

// Messages from other nodes arrive in batches (one Redis PUBLISH per event-loop
// turn of the sender, thousands of messages under load). Handed to Aedes all at
// once, they piled up in mqemitter's queue, which Aedes drains with
// Array#shift: quadratic on a long queue (bench/README.md, issue 14: 200 µs
// CPU per delivered message on the subscriber's node). A batch must reach the
// subscribers complete and in order while mqemitter's queue stays short.

const BATCH = 5000;
let redis: RestartableService;
let node: TestApp;
let pub: Redis;

beforeAll(async () => {
  redis = await startRedis();
  node = await startApp({ CLUSTER_MODE: 'redis', CLUSTER_NODE_ID: 'inject-b', REDIS_URL: redis.url });
  pub = new Redis(redis.url, { maxRetriesPerRequest: 1 });
}, 30_000);
afterAll(async () => {
  pub?.disconnect();
  await node?.stop();
  await redis?.stop();
});

describe('cross-node delivery into the local broker', () => {
  it('delivers a large batch complete and in order, never queueing it all in mqemitter', async () => {
    const aedes = (node.app as unknown as { broker: { broker: { aedesInstance: Aedes } } }).broker.broker
      .aedesInstance;
    const mq = (aedes as unknown as { mq: { length: number } }).mq;
    let longest = 0;
    aedes.on('publish', () => {
      longest = Math.max(longest, mq.length);
    });
    const sub = await mqtt.connectAsync(node.mqttUrl, { protocolVersion: 4 });
    try {
      const got: number[] = [];
      sub.on('message', (_t, payload) => got.push(Number(payload.toString())));
      await sub.subscribeAsync('sensors/#', { qos: 0 });
      const frames = [batchHeader('inject-a')];
      for (let i = 0; i < BATCH; i++)
        frames.push(
          encodeMessage({
            topic: `sensors/building_001/1/room_${i % 50}/temperature`,
            payload: Buffer.from(String(i)),
            qos: 0,
            retain: false,
          }),
        );
      expect(await pub.publish('cluster:msg:inject-b', Buffer.concat(frames))).toBe(1);
      await eventually(async () => got.length >= BATCH, 20_000, `${BATCH} messages delivered`);
      expect(got).toEqual(Array.from({ length: BATCH }, (_, i) => i));
      // before the fix: the whole batch but mqemitter's 100 slots waited in its queue (~4,900)
      expect(longest).toBeLessThanOrEqual(100);
    } finally {
      await sub.endAsync();
    }
  }, 40_000);
});
