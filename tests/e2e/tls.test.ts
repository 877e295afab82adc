import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { hashPassword } from '../../src/broker/credentials.js';
import { migrate } from '../../src/metadata/migrations.js';
import { startApp, type TestApp } from '../helpers/app.js';
import { makeCerts, type TestCerts } from '../helpers/certs.js';
import { eventually, freshDatabase } from '../helpers/services.js';

const exec = promisify(execFile);

async function pubTls(port: number, args: string[], topic: string): Promise<number> {
  try {
    await exec(
      'mosquitto_pub',
      ['-h', '127.0.0.1', '-p', String(port), '-q', '1', '-t', topic, '-m', '20', ...args],
      { timeout: 10_000 },
    );
    return 0;
  } catch (err) {
    return (err as { code: number }).code;
  }
}

describe('MQTT over TLS (openssl certificates, mosquitto_pub, MQTT.js)', () => {
  let certs: TestCerts;
  let t: TestApp;
  beforeAll(async () => {
    certs = makeCerts('sensor-tls');
    const url = await freshDatabase(inject('postgresUrl'), 'tls_e2e');
    await migrate(url);
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    await db.query(`INSERT INTO buildings (id, name, address) VALUES (1, '건물A', '서울시 강남구')`);
    await db.query(
      `INSERT INTO mqtt_devices (username, password_hash, building_id) VALUES ('sensor-tls', $1, 1), ('sensor-pw', $2, 1)`,
      [await hashPassword('unused-password', 16384), await hashPassword('tls-password', 16384)],
    );
    await db.end();
    t = await startApp({
      DATABASE_URL: url,
      ALLOW_ANONYMOUS: 'false',
      MQTT_TLS_PORT: '0',
      MQTT_TLS_CERT: certs.serverCert,
      MQTT_TLS_KEY: certs.serverKey,
      MQTT_TLS_CA: certs.ca,
    });
  });
  afterAll(async () => {
    await t?.stop();
  });
  const topic = 'sensors/building_001/1/tls/temperature';

  it('password logins work over TLS for a client that trusts the CA', async () => {
    const before = t.app.metrics.pointsWritten.get();
    expect(
      await pubTls(t.app.mqttTlsPort, ['--cafile', certs.ca, '-u', 'sensor-pw', '-P', 'tls-password'], topic),
    ).toBe(0);
    await eventually(async () => t.app.metrics.pointsWritten.get() > before);
  });

  it('a client certificate from the CA whose CN names a device logs in without a password', async () => {
    const before = t.app.metrics.pointsWritten.get();
    expect(
      await pubTls(
        t.app.mqttTlsPort,
        ['--cafile', certs.ca, '--cert', certs.clientCert, '--key', certs.clientKey],
        topic,
      ),
    ).toBe(0);
    await eventually(async () => t.app.metrics.pointsWritten.get() > before);
  });

  it('a self-signed certificate with the same CN names nobody, and the client is refused', async () => {
    expect(
      await pubTls(
        t.app.mqttTlsPort,
        ['--cafile', certs.ca, '--cert', certs.strangerCert, '--key', certs.strangerKey],
        topic,
      ),
    ).not.toBe(0);
  });

  it('MQTT.js over mqtts verifies the server against the CA', async () => {
    const c = await mqtt.connectAsync(`mqtts://127.0.0.1:${t.app.mqttTlsPort}`, {
      protocolVersion: 4,
      ca: readFileSync(certs.ca),
      username: 'sensor-pw',
      password: 'tls-password',
    });
    await c.publishAsync(topic, '22', { qos: 1 });
    await c.endAsync();
    await expect(
      mqtt.connectAsync(`mqtts://127.0.0.1:${t.app.mqttTlsPort}`, {
        protocolVersion: 4,
        reconnectPeriod: 0,
        connectTimeout: 3000,
      }),
    ).rejects.toThrow(/certificate/i);
  });
});

describe('HTTPS and MQTT over WSS', () => {
  it('serves /health over HTTPS and MQTT over wss://…/mqtt when http.tls is set', async () => {
    // an RSA key: with it a static-RSA suite could be negotiated, were it offered
    const certs = makeCerts('unused', { serverKey: 'rsa' });
    const t = await startApp({ EI_HTTP_TLS_CERT: certs.serverCert, EI_HTTP_TLS_KEY: certs.serverKey });
    try {
      const { get } = await import('node:https');
      const status = await new Promise<number>((resolve, reject) => {
        get(`https://127.0.0.1:${t.app.httpPort}/health`, { ca: readFileSync(certs.ca) }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        }).on('error', reject);
      });
      expect(status).toBe(200);
      const c = await mqtt.connectAsync(`wss://127.0.0.1:${t.app.httpPort}/mqtt`, {
        protocolVersion: 4,
        ca: readFileSync(certs.ca),
      });
      const before = t.app.metrics.pointsWritten.get();
      await c.publishAsync('sensors/building_001/1/wss/temperature', '19.5', { qos: 1 });
      await c.endAsync();
      await eventually(async () => t.app.metrics.pointsWritten.get() > before);
      // HTTPS offers TLS 1.2 with ECDHE AEAD suites only (issue 18 item 5), as the MQTT/TLS listener
      const sClient = (cipher: string) =>
        new Promise<boolean>((resolve) => {
          const child = execFile(
            'openssl',
            ['s_client', '-connect', `127.0.0.1:${t.app.httpPort}`, '-tls1_2', '-cipher', cipher],
            { timeout: 10_000 },
            (err) => resolve(!err),
          );
          child.stdin?.end(); // s_client ends the connection once its input ends
        });
      expect(await sClient('AES128-SHA')).toBe(false);
      expect(await sClient('ECDHE-RSA-AES128-SHA')).toBe(false);
      expect(await sClient('ECDHE-RSA-AES128-GCM-SHA256')).toBe(true);
    } finally {
      await t.stop();
    }
  });
});
