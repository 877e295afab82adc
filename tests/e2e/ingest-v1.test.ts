import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { deadLetters, mosquittoPub, startApp, type TestApp } from '../helpers/app.js';
import { eventually, influxQuery, wholePoints } from '../helpers/services.js';

// MQTT in (mosquitto_pub, MQTT.js over TCP and WebSocket) → InfluxDB 1.x out.

describe('ingestion into InfluxDB 1.x through real MQTT clients', () => {
  let t: TestApp;
  const db = `e2e_v1_${Date.now()}`;
  const url = inject('influx1Url');
  const rows = (where = '') => influxQuery(url, db, `SELECT * FROM sensor_readings ${where}`);
  /** the first row once every row is a whole point (a query racing the write sees some fields only) */
  const wholeFirst = (r: Record<string, unknown>[]) => (wholePoints(r) ? r[0] : undefined);

  beforeAll(async () => {
    t = await startApp({ INFLUX_URL: url, INFLUX_DATABASE: db });
  });
  afterAll(async () => {
    await t.stop();
  });

  it('detects InfluxDB 1.x and creates the database', async () => {
    const dbs = await influxQuery(url, db, 'SHOW DATABASES');
    expect(dbs.map((r) => r.name)).toContain(db);
  });

  it('stores the contract example exactly (mosquitto_pub, QoS 1)', async () => {
    const ts = new Date(Date.now() - 60_000).toISOString().replace(/\.\d+Z$/, 'Z');
    await mosquittoPub(
      t.app.mqttPort,
      'sensors/building_001/3/office_301/temperature',
      JSON.stringify({ value: 23.5, unit: 'celsius', status: 'normal', timestamp: ts }),
    );
    const got = await eventually(
      async () => wholeFirst(await rows(`WHERE room = 'office_301'`)),
      10_000,
      'point stored',
    );
    expect(got).toEqual({
      time: Date.parse(ts),
      building_id: 'building_001',
      floor: '3',
      room: 'office_301',
      sensor_type: 'temperature',
      value: 23.5,
      unit: 'celsius',
      status: 'normal',
    });
  });

  it('bare numbers get the receipt time, fixed once, and the default unit; bare ids become canonical keys', async () => {
    const before = Date.now();
    await mosquittoPub(t.app.mqttPort, 'sensors/42/지하1층/기계실 A,동=1/power', '1234.5');
    const after = Date.now();
    const got = await eventually(
      async () => wholeFirst(await rows(`WHERE building_id = 'building_042'`)),
      10_000,
      'point stored',
    );
    expect(got).toMatchObject({
      floor: '지하1층',
      room: '기계실 A,동=1',
      sensor_type: 'power',
      value: 1234.5,
      unit: 'W',
      status: 'normal',
    });
    expect(got.time as number).toBeGreaterThanOrEqual(before);
    expect(got.time as number).toBeLessThanOrEqual(after);
  });

  it('arrays from MQTT.js at QoS 1, with extra fields', async () => {
    const client = await mqtt.connectAsync(t.mqttUrl, { protocolVersion: 4 });
    const base = Date.now() - 10_000;
    const payload = Array.from({ length: 50 }, (_, i) => ({
      value: i,
      timestamp: base + i,
      battery: 90 - i,
      ok: i % 2 === 0,
      fw: `v"${i}"`,
    }));
    await client.publishAsync('sensors/building_007/1/lab/humidity', JSON.stringify(payload), { qos: 1 });
    await client.endAsync();
    const got = await eventually(async () => {
      const r = await rows(`WHERE building_id = 'building_007'`);
      // InfluxDB stores each field of a point separately: a query racing the write can see
      // `value` before `battery` (seen once in CI), so wait for whole points
      return r.length === 50 && r.every((x) => x.battery !== null) && r;
    });
    expect(got[3]).toMatchObject({
      value: 3,
      battery: 87,
      ok: false,
      fw: 'v"3"',
      unit: 'percent',
      time: base + 3,
    });
  });

  it('MQTT over WebSocket at /mqtt', async () => {
    const client = await mqtt.connectAsync(`ws://127.0.0.1:${t.app.httpPort}/mqtt`, { protocolVersion: 4 });
    await client.publishAsync('sensors/building_003/2/ws_room/co2', JSON.stringify({ value: 800 }), {
      qos: 1,
    });
    await client.endAsync();
    const got = await eventually(async () => wholeFirst(await rows(`WHERE room = 'ws_room'`)));
    expect(got).toMatchObject({ value: 800, unit: 'ppm', building_id: 'building_003' });
  });

  it('acknowledges, counts and dead-letters every kind of bad input, and keeps running', async () => {
    const port = t.app.mqttPort;
    const cases: Array<[string, string | Buffer, string]> = [
      ['sensors/1/2/3', '1', 'bad_topic'],
      ['sensors/1/2/r/temperature', '{"value": 23.5,', 'bad_json'],
      ['sensors/1/2/r/temperature', 'NaN', 'bad_value'],
      ['sensors/1/2/r/temperature', '{"value":1,"timestamp":"yesterday"}', 'bad_timestamp'],
      [
        'sensors/1/2/r/temperature',
        '{"value":1,"timestamp":"2001-01-01T00:00:00Z"}',
        'timestamp_out_of_range',
      ],
      ['sensors/1/2/r/temperature', 'x'.repeat(70_000), 'payload_too_large'],
    ];
    for (const [topic, msg] of cases) await mosquittoPub(port, topic, msg.toString());
    // invalid UTF-8 through MQTT.js (mosquitto_pub cannot send raw bytes from -m)
    const client = await mqtt.connectAsync(t.mqttUrl, { protocolVersion: 4 });
    await client.publishAsync('sensors/1/2/r/temperature', Buffer.from([0xff, 0xfe, 0x31]), { qos: 1 });
    await client.endAsync();

    const dl = await eventually(async () => {
      const d = deadLetters(t.dataDir);
      return d.length >= cases.length + 1 && d;
    });
    expect(dl.map((d) => d.reason)).toEqual([...cases.map((c) => c[2]), 'bad_json']);
    for (const d of dl) {
      expect(Object.keys(d)).toEqual(
        expect.arrayContaining(['received_at', 'client_id', 'topic', 'reason', 'detail', 'payload']),
      );
    }
    const bin = dl.at(-1)!;
    expect(bin.payload_encoding).toBe('base64');
    expect(Buffer.from(bin.payload as string, 'base64')).toEqual(Buffer.from([0xff, 0xfe, 0x31]));
    expect((dl[5]!.payload as string).length).toBe(65536);

    const metrics = await (await fetch(`${t.httpUrl}/metrics`)).text();
    for (const reason of [
      'bad_topic',
      'bad_json',
      'bad_value',
      'bad_timestamp',
      'timestamp_out_of_range',
      'payload_too_large',
    ]) {
      expect(metrics).toMatch(
        new RegExp(`energy_ingest_messages_rejected_total\\{reason="${reason}"\\} [1-9]`),
      );
    }
    expect((await fetch(`${t.httpUrl}/health`)).status).toBe(200);
  });

  it('a line InfluxDB refuses is dead-lettered as sink_rejected; the rest of its batch is written', async () => {
    // "mode" first arrives as a number, then as a string: InfluxDB refuses the second (field type conflict).
    const client = await mqtt.connectAsync(t.mqttUrl, { protocolVersion: 4 });
    const base = Date.now() - 5000;
    await client.publishAsync(
      'sensors/building_009/1/conflict/power',
      JSON.stringify({ value: 1, mode: 1, timestamp: base }),
      { qos: 1 },
    );
    await eventually(async () => (await rows(`WHERE room = 'conflict'`)).length === 1);
    const batch = [
      { value: 2, mode: 2, timestamp: base + 1 },
      { value: 3, mode: 'auto', timestamp: base + 2 },
      { value: 4, mode: 4, timestamp: base + 3 },
    ];
    await client.publishAsync('sensors/building_009/1/conflict/power', JSON.stringify(batch), { qos: 1 });
    await client.endAsync();
    const dl = await eventually(async () => deadLetters(t.dataDir).find((d) => d.reason === 'sink_rejected'));
    expect(dl.topic).toBe('sensors/building_009/1/conflict/power');
    expect(String(dl.detail)).toMatch(/conflict/);
    const got = await eventually(async () => {
      const r = await rows(`WHERE room = 'conflict'`);
      return r.length === 3 && r;
    });
    expect(got.map((r) => r.value)).toEqual([1, 2, 4]);
  });

  it('a single reading InfluxDB refuses is dead-lettered with its message exactly as published (issue 15: the log keeps the payload bytes)', async () => {
    const client = await mqtt.connectAsync(t.mqttUrl, { protocolVersion: 4 });
    const topic = 'sensors/building_009/1/conflict2/power';
    const base = Date.now() - 5000;
    await client.publishAsync(topic, JSON.stringify({ value: 1, mode: 1, timestamp: base }), { qos: 1 });
    await eventually(async () => (await rows(`WHERE room = 'conflict2'`)).length === 1);
    // one flat object (the parser's fast path), with the spacing a sensor might send
    const sent = ` {"value": 5, "mode": "auto",  "timestamp": ${base + 1}} `;
    await client.publishAsync(topic, sent, { qos: 1 });
    await client.endAsync();
    const dl = await eventually(async () =>
      deadLetters(t.dataDir).find((d) => d.reason === 'sink_rejected' && d.topic === topic),
    );
    expect(dl.payload).toBe(sent);
    expect(String(dl.detail)).toMatch(/conflict/);
  });
});

describe('unknown buildings', () => {
  it('are rejected once buildings are listed, unless acceptUnknownBuildings', async () => {
    const { writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tempDir } = await import('../helpers/services.js');
    const cfgPath = join(tempDir('cfg'), 'c.yaml');
    writeFileSync(cfgPath, 'buildings:\n  - { id: 1, name: 건물A, address: 서울시 강남구 }\n');
    const t = await startApp({}, cfgPath);
    try {
      await mosquittoPub(t.app.mqttPort, 'sensors/building_002/1/r/power', '5');
      await mosquittoPub(t.app.mqttPort, 'sensors/building_001/1/r/power', '6');
      const dl = await eventually(async () => deadLetters(t.dataDir)[0]);
      expect(dl).toMatchObject({ reason: 'unknown_building', topic: 'sensors/building_002/1/r/power' });
      const api = (await (await fetch(`${t.httpUrl}/api/buildings`)).json()) as {
        source: string;
        buildings: unknown[];
      };
      expect(api.source).toBe('config');
      expect(api.buildings).toEqual([
        {
          id: 1,
          key: 'building_001',
          name: '건물A',
          address: '서울시 강남구',
          total_area: null,
          floors: null,
          building_type: null,
          tenants: [],
        },
      ]);
    } finally {
      await t.stop();
    }
    const open = await startApp({ EI_INGEST_ACCEPT_UNKNOWN_BUILDINGS: 'true' }, cfgPath);
    try {
      await mosquittoPub(open.app.mqttPort, 'sensors/building_002/1/r/power', '5');
      await eventually(async () => open.app.metrics.pointsWritten.get() === 1);
      expect(deadLetters(open.dataDir)).toEqual([]);
    } finally {
      await open.stop();
    }
  });
});
