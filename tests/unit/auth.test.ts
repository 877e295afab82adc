import { describe, expect, it } from 'vitest';
import { canPublish, canSubscribe, type Principal, roleOf } from '../../src/broker/acl.js';
import {
  hashPassword,
  parseWerkzeugHash,
  VerifiedCache,
  verifyPassword,
} from '../../src/broker/credentials.js';

// Hashes made by Python's hashlib exactly as werkzeug.security.generate_password_hash formats them.
const SCRYPT =
  'scrypt:16384:8:1$Qx7sL2pZ0aBcDeFg$91581796309caa44a07024934f3fcb4a4629b324487a6922de6729fb8b020ca0f624d033e2099940570db12e796fdcf60131ccfa61d0b407d100c579ecc95ad1';
const PBKDF2 =
  'pbkdf2:sha256:1000$saltysalt$e2276b360243720a6364e76e1e6147f056c0417039b9ac5d0c4f218f46ccb9ec';

describe('werkzeug password hashes', () => {
  it('verifies scrypt and pbkdf2 hashes written by werkzeug', async () => {
    expect(await verifyPassword('비밀secret', SCRYPT)).toBe(true);
    expect(await verifyPassword('비밀secreT', SCRYPT)).toBe(false);
    expect(await verifyPassword('hunter2', PBKDF2)).toBe(true);
    expect(await verifyPassword('hunter3', PBKDF2)).toBe(false);
  });
  it('refuses malformed or absurd hashes instead of throwing', async () => {
    for (const bad of [
      '',
      'plain',
      'md5$x$abcd',
      'scrypt:99999999:8:1$s$abcd',
      'pbkdf2:sha256:1000$s$zz',
      'scrypt:16384:8:1$s',
    ]) {
      expect(parseWerkzeugHash(bad)).toBeUndefined();
      expect(await verifyPassword('x', bad)).toBe(false);
    }
  });
  it('writes werkzeug-format scrypt hashes that verify', async () => {
    const h = await hashPassword('센서-pw', 16384);
    expect(h).toMatch(/^scrypt:16384:8:1\$[A-Za-z0-9]{16}\$[0-9a-f]{128}$/);
    expect(await verifyPassword('센서-pw', h)).toBe(true);
  });
  it('caches successful verifications only, without keeping the password', async () => {
    const cache = new VerifiedCache();
    const t0 = performance.now();
    expect(await cache.verify('비밀secret', SCRYPT)).toBe(true);
    const first = performance.now() - t0;
    const t1 = performance.now();
    for (let i = 0; i < 100; i++) expect(await cache.verify('비밀secret', SCRYPT)).toBe(true);
    expect((performance.now() - t1) / 100).toBeLessThan(first);
    expect(await cache.verify('wrong', SCRYPT)).toBe(false);
    expect(JSON.stringify([...(cache as unknown as { seen: Set<string> }).seen])).not.toContain('비밀');
  });
});

describe('ACL (contract section 9)', () => {
  const sensor = (buildingId: number | null): Principal => ({
    username: 's',
    role: 'sensor',
    buildingId,
    anonymous: false,
  });
  const dash: Principal = { username: 'd', role: 'dashboard', buildingId: null, anonymous: false };
  const admin: Principal = { username: 'a', role: 'admin', buildingId: null, anonymous: false };
  it('a sensor publishes only under its own building (either key form), and subscribes to nothing', () => {
    expect(canPublish(sensor(1), 'sensors/building_001/1/r/t').ok).toBe(true);
    expect(canPublish(sensor(1), 'sensors/1/1/r/t').ok).toBe(true);
    expect(canPublish(sensor(1), 'sensors/building_002/1/r/t').ok).toBe(false);
    expect(canPublish(sensor(1), 'other/topic').ok).toBe(false);
    expect(canPublish(sensor(null), 'sensors/building_002/1/r/t').ok).toBe(true);
    // the building segment alone, whatever follows it (or nothing)
    expect(canPublish(sensor(1), 'sensors/building_001').ok).toBe(true);
    expect(canPublish(sensor(1), 'sensors/building_0011/x').ok).toBe(false);
    expect(canPublish(sensor(1), 'sensors//building_001').ok).toBe(false);
    expect(canSubscribe(sensor(1), 'sensors/#').ok).toBe(false);
  });
  it('dashboards read alerts/# and sensors/#, publish nothing', () => {
    expect(canSubscribe(dash, 'alerts/#').ok).toBe(true);
    expect(canSubscribe(dash, 'sensors/building_001/+/+/power').ok).toBe(true);
    expect(canSubscribe(dash, '#').ok).toBe(false);
    expect(canSubscribe(dash, '$SYS/#').ok).toBe(false);
    expect(canPublish(dash, 'sensors/1/1/r/t').ok).toBe(false);
  });
  it('admins do everything but publish alerts; only the daemon does that', () => {
    expect(canSubscribe(admin, '$SYS/#').ok).toBe(true);
    expect(canPublish(admin, 'plain/x').ok).toBe(true);
    expect(canPublish(admin, 'alerts/building_001/1/r/t/hot').ok).toBe(false);
  });
  it('maps stored roles', () => {
    expect(roleOf('admin', 'users')).toBe('admin');
    expect(roleOf('user', 'users')).toBe('dashboard');
    expect(roleOf('dashboard', 'devices')).toBe('dashboard');
    expect(roleOf(null, 'devices')).toBe('sensor');
  });
});
