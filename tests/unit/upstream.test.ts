import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, redactedConfig } from '../../src/config/load.js';
import { subscriptionFilters } from '../../src/upstream/connection.js';
import { upstreamClientIds } from '../../src/upstream/upstream.js';

// Bridge-mode configuration (contract section 15): defaults, the names, the
// checks that stop start-up with a message naming the key.

function file(yaml: string): string {
  const p = join(mkdtempSync(join(tmpdir(), 'ei-up-')), 'c.yaml');
  writeFileSync(p, yaml);
  return p;
}

describe('upstream configuration', () => {
  it('has the contract defaults and is off without a URL', () => {
    const c = loadConfig({ env: {} });
    expect(c.mqtt.enabled).toBe(true);
    expect(c.upstream).toMatchObject({
      topics: ['sensors/#'],
      shareGroup: 'energy-ingest',
      protocolVersion: 5,
      connections: 2,
      sessionExpirySeconds: 86400,
      publishAlerts: true,
    });
    expect(c.upstream.url).toBeUndefined();
    expect(c.upstream.clientId).toBeUndefined();
  });

  it('reads UPSTREAM_MQTT_URL/USERNAME/PASSWORD; URL credentials go to username/password, env wins', () => {
    const c = loadConfig({
      env: {
        UPSTREAM_MQTT_URL: 'mqtts://gw:urlpw@broker.example:8883',
        UPSTREAM_MQTT_PASSWORD: 'envpw',
      },
    });
    expect(c.upstream.url).toBe('mqtts://broker.example:8883');
    expect(c.upstream.username).toBe('gw');
    expect(c.upstream.password).toBe('envpw');
    const printed = JSON.stringify(redactedConfig(c));
    expect(printed).not.toContain('envpw');
    expect(printed).not.toContain('urlpw');
  });

  it('an empty share group means plain subscriptions (file and env)', () => {
    expect(
      loadConfig({ configPath: file('upstream:\n  shareGroup: ""\n'), env: {} }).upstream.shareGroup,
    ).toBe('');
    expect(loadConfig({ env: { EI_UPSTREAM_SHARE_GROUP: '' } }).upstream.shareGroup).toBe('');
    expect(subscriptionFilters(['sensors/#', 'site/+/x'], 'energy-ingest')).toEqual([
      '$share/energy-ingest/sensors/#',
      '$share/energy-ingest/site/+/x',
    ]);
    expect(subscriptionFilters(['sensors/#'], '')).toEqual(['sensors/#']);
  });

  it('topics from a YAML list or a comma-separated env var', () => {
    const c = loadConfig({
      configPath: file('upstream:\n  topics: [sensors/building_001/#, sensors/building_002/#]\n'),
      env: {},
    });
    expect(c.upstream.topics).toEqual(['sensors/building_001/#', 'sensors/building_002/#']);
    expect(loadConfig({ env: { EI_UPSTREAM_TOPICS: 'a/#,b/#' } }).upstream.topics).toEqual(['a/#', 'b/#']);
  });

  it('refuses what cannot work, naming the key', () => {
    expect(() => loadConfig({ env: { UPSTREAM_MQTT_URL: 'http://broker:1883' } })).toThrow(
      /upstream\.url: must be mqtt:\/\/ or mqtts:\/\//,
    );
    expect(() => loadConfig({ env: { EI_MQTT_ENABLED: 'false' } })).toThrow(
      /mqtt\.enabled: false needs upstream\.url/,
    );
    expect(() => loadConfig({ env: { EI_UPSTREAM_PROTOCOL_VERSION: '3' } })).toThrow(
      /upstream\.protocolVersion/,
    );
    expect(() => loadConfig({ env: { EI_UPSTREAM_SHARE_GROUP: 'a/b' } })).toThrow(/upstream\.shareGroup/);
    const off = loadConfig({ env: { EI_MQTT_ENABLED: 'false', UPSTREAM_MQTT_URL: 'mqtt://127.0.0.1:1883' } });
    expect(off.mqtt.enabled).toBe(false);
  });

  it('client ids: energy-ingest-{node}, -{n} per connection, upstream.clientId wins', () => {
    const c = loadConfig({ env: {} }).upstream;
    expect(upstreamClientIds(c, 'node7')).toEqual(['energy-ingest-node7-1', 'energy-ingest-node7-2']);
    expect(upstreamClientIds({ ...c, connections: 1 }, 'node7')).toEqual(['energy-ingest-node7']);
    expect(upstreamClientIds({ ...c, clientId: 'site-a', connections: 3 }, 'node7')).toEqual([
      'site-a-1',
      'site-a-2',
      'site-a-3',
    ]);
  });
});
