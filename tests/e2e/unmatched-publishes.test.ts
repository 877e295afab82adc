import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type TestApp } from '../helpers/app.js';
import { metricValue } from '../helpers/daemon.js';

// Issue 15: messages no subscription can match skip Aedes's topic trie
// (src/broker/topicEmitter.ts). Subscribers that come and go, with and
// without wildcards, must still get every message they match.

const UNMATCHED = 'energy_ingest_broker_unmatched_publishes_total';

describe('publishes nobody subscribes to (issue 15)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startApp();
  });
  afterAll(async () => {
    await t?.stop();
  });

  const unmatched = async () => metricValue(await (await fetch(`${t.httpUrl}/metrics`)).text(), UNMATCHED);

  async function publishAll(sensor: mqtt.MqttClient, n: number, tag: string): Promise<void> {
    for (let i = 0; i < n; i++)
      await sensor.publishAsync(`sensors/building_001/1/${tag}/power`, JSON.stringify({ value: i }), {
        qos: 1,
      });
  }

  it('are counted; subscribers on sensors/#, +/…/# and # get every reading while they listen', async () => {
    const sensor = await mqtt.connectAsync(t.mqttUrl, { protocolVersion: 4, reconnectPeriod: 0 });
    const dash = await mqtt.connectAsync(t.mqttUrl, { protocolVersion: 4, reconnectPeriod: 0 });
    const got: string[] = [];
    dash.on('message', (topic, payload) => got.push(`${topic.split('/')[3]} ${payload}`));
    try {
      const before = await unmatched();
      await publishAll(sensor, 5, 'alone');
      expect(await unmatched()).toBe(before + 5);

      for (const [filter, tag] of [
        ['sensors/#', 'exact'],
        ['+/building_001/#', 'plus'],
        ['#', 'all'],
      ] as const) {
        await dash.subscribeAsync(filter, { qos: 1 });
        const at = await unmatched();
        await publishAll(sensor, 5, tag);
        await expect.poll(() => got.filter((g) => g.startsWith(`${tag} `)).length).toBe(5);
        expect(got.filter((g) => g.startsWith(`${tag} `))).toEqual(
          [0, 1, 2, 3, 4].map((i) => `${tag} {"value":${i}}`),
        );
        expect(await unmatched()).toBe(at);
        await dash.unsubscribeAsync(filter);
      }

      // an unrelated subscription does not stop the shortcut for sensors/…
      await dash.subscribeAsync('alerts/#', { qos: 1 });
      await expect
        .poll(async () => {
          const at = await unmatched();
          await publishAll(sensor, 3, 'gone');
          return (await unmatched()) - at;
        })
        .toBe(3);
      expect(got.filter((g) => g.startsWith('gone '))).toEqual([]);
    } finally {
      await sensor.endAsync();
      await dash.endAsync();
    }
  });
});
