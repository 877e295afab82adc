import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { Authenticator, type AuthenticatorOptions } from '../../src/broker/auth.js';
import { DerivationSlots, hashPassword, VerifiedCache } from '../../src/broker/credentials.js';
import { RateLimitedLog } from '../../src/log.js';
import type { DeviceRow } from '../../src/metadata/snapshot.js';
import { Metrics } from '../../src/metrics.js';

// Issue 18 items 4 and 10 at the Authenticator: an infrastructure failure
// (PostgreSQL or Redis erroring or silent) answers CONNACK 0x03, never 0x04/0x05,
// and every refused name costs the same one key derivation, whatever it is.

const N = 1024; // cheap hashes: what is counted here is derivations, not time

async function setup(over: Partial<AuthenticatorOptions> = {}) {
  const good = await hashPassword('right', N);
  const userHash = await hashPassword('right', N); // its own salt, as every real row has
  const devices: DeviceRow[] = [
    { id: 1, username: 'sensor-1', password_hash: good, building_id: 1, role: 'sensor', enabled: true },
    { id: 2, username: 'sensor-off', password_hash: good, building_id: 1, role: 'sensor', enabled: false },
    { id: 3, username: 'sensor-nohash', password_hash: '!', building_id: 1, role: 'sensor', enabled: false },
    {
      id: 4,
      username: 'sensor-costly',
      password_hash: `scrypt:1048576:8:1$salt$${'ab'.repeat(64)}`,
      building_id: 1,
      role: 'sensor',
      enabled: true,
    },
  ];
  let derivations = 0;
  const log = pino({ level: 'silent' });
  const metrics = new Metrics();
  const auth = new Authenticator({
    allowAnonymous: false,
    devices: () => devices,
    lookupUser: async (u) => (u === 'ops' ? { password_hash: userHash, role: 'admin' } : undefined),
    cache: new VerifiedCache(100, new DerivationSlots(4, 100), () => derivations++),
    metrics,
    log,
    refusals: new RateLimitedLog(log),
    ...over,
  });
  const attempt = async (user: string, pw: string) => {
    const before = derivations;
    const r = await auth.authenticate('c', user, Buffer.from(pw));
    return { code: r.ok ? 0 : r.returnCode, derivations: derivations - before };
  };
  return { attempt, auth, count: () => derivations };
}

describe('login answers (issue 18 items 4 and 10)', () => {
  it('refuses unknown, disabled, hash-less, too-costly and existing names alike: 0x04 after one derivation', async () => {
    const { attempt } = await setup();
    for (const name of ['nobody', 'sensor-off', 'sensor-nohash', 'sensor-costly', 'sensor-1', 'ops'])
      expect({ name, ...(await attempt(name, `wrong-${name}`)) }).toEqual({ name, code: 4, derivations: 1 });
    // only who knows a disabled device's password learns that it is disabled
    expect((await attempt('sensor-off', 'right')).code).toBe(5);
    expect((await attempt('sensor-1', 'right')).code).toBe(0);
    expect((await attempt('ops', 'right')).code).toBe(0);
  });

  it('does not let concurrent guesses at several unknown names share one derivation', async () => {
    const { auth, count } = await setup();
    const codes = await Promise.all(
      ['nobody-a', 'nobody-b', 'sensor-1', 'ops'].map(async (u) => {
        const r = await auth.authenticate('c', u, Buffer.from('same-guess'));
        return r.ok ? 0 : r.returnCode;
      }),
    );
    expect(codes).toEqual([4, 4, 4, 4]);
    // one each, as for names that exist (whose hashes differ anyway)
    expect(count()).toBe(4);
  });

  it('answers 0x03 when the users look-up fails, for device names and other names alike', async () => {
    const { attempt } = await setup({
      lookupUser: () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:5432')),
    });
    for (const name of ['nobody', 'ops', 'sensor-1', 'sensor-off'])
      expect({ name, ...(await attempt(name, `wrong-${name}`)) }).toEqual({ name, code: 3, derivations: 1 });
    // a device's right password needs no PostgreSQL
    expect((await attempt('sensor-1', 'right')).code).toBe(0);
  });

  it('answers 0x03 within the look-up timeout when PostgreSQL never answers', async () => {
    const { attempt } = await setup({
      lookupUser: () => new Promise(() => {}),
      lookupTimeoutMs: 200,
    });
    const t0 = performance.now();
    expect((await attempt('ops', 'right')).code).toBe(3);
    expect(performance.now() - t0).toBeLessThan(5000);
  }, 10_000);

  it('answers 0x03 when Redis fails or hangs on a session login', async () => {
    for (const lookupSession of [
      () => Promise.reject(new Error('Connection is closed.')),
      () => new Promise<string | null>(() => {}),
    ]) {
      const { attempt } = await setup({ lookupSession, lookupTimeoutMs: 200 });
      expect((await attempt('session', 'abc123')).code).toBe(3);
    }
    // a session login does not depend on PostgreSQL answering for the reserved name
    const { attempt } = await setup({
      lookupUser: () => Promise.reject(new Error('down')),
      lookupSession: async () =>
        JSON.stringify({ username: 'u', role: 'admin', expires_at: '2999-01-01T00:00:00Z' }),
    });
    expect((await attempt('session', 'abc123')).code).toBe(0);
  });
});
