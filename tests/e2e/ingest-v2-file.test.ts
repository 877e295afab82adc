import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { describe, expect, inject, it } from 'vitest';
import { probeInflux } from '../../src/sinks/detect.js';
import { mosquittoPub, startApp } from '../helpers/app.js';
import { eventually, victoriaExport } from '../helpers/services.js';

describe('InfluxDB v2 write API (VictoriaMetrics) and the file sink', () => {
  it('auto detection: 1.x by its version header, v2 when a token is set and no header says otherwise', async () => {
    expect((await probeInflux(inject('influx1Url'), undefined, 2000)).api).toBe('v1');
    expect((await probeInflux(inject('victoriaUrl'), 'tok', 2000)).api).toBe('v2');
    await expect(probeInflux('http://127.0.0.1:1', undefined, 500)).rejects.toThrow(/did not answer/);
  });

  it('writes through @influxdata/influxdb-client to /api/v2/write', async () => {
    const url = inject('victoriaUrl');
    const t = await startApp({ INFLUX_URL: url, INFLUX_API: 'v2', INFLUX_TOKEN: 'secret-token' });
    try {
      const run = `v2run${Date.now()}`;
      const client = await mqtt.connectAsync(t.mqttUrl, { protocolVersion: 4 });
      const ts = Date.now() - 1000;
      await client.publishAsync(
        `sensors/1/${run}/회의실 B,=x/temperature`,
        JSON.stringify({ value: 21.25, timestamp: ts }),
        { qos: 1 },
      );
      await client.endAsync();
      const series = await eventually(async () => {
        const s = await victoriaExport(url, `{__name__="sensor_readings_value",floor="${run}"}`);
        return s.length > 0 && s;
      }, 15_000);
      expect(series[0]!.metric).toMatchObject({
        building_id: 'building_001',
        room: '회의실 B,=x',
        sensor_type: 'temperature',
      });
      expect(series[0]!.values).toEqual([21.25]);
      expect(series[0]!.timestamps).toEqual([ts]);
    } finally {
      await t.stop();
    }
  });

  it('without influx.url, appends loadable line protocol to dataDir/readings/YYYY-MM-DD.lp', async () => {
    const t = await startApp({});
    try {
      const ts = Date.now() - 1000;
      await mosquittoPub(
        t.app.mqttPort,
        'sensors/building_001/3/office_301/temperature',
        `{"value":23.5,"timestamp":${ts}}`,
        0,
      );
      const dir = join(t.dataDir, 'readings');
      const text = await eventually(async () => {
        const files = readdirSync(dir);
        return files.length > 0 && readFileSync(join(dir, files[0]!), 'utf8');
      });
      expect(readdirSync(dir)[0]).toMatch(/^\d{4}-\d{2}-\d{2}\.lp$/);
      expect(text).toBe(
        `sensor_readings,building_id=building_001,floor=3,room=office_301,sensor_type=temperature value=23.5,unit="celsius",status="normal" ${ts}\n`,
      );
    } finally {
      await t.stop();
    }
  });
});
