import { describe, expect, it } from 'vitest';
import { DerivationSlots, dummyHash, parseWerkzeugHash } from '../../src/broker/credentials.js';
import { LoginGuard } from '../../src/broker/loginGuard.js';

// The pieces of issue 12 item 4 (tests/e2e/login-abuse.test.ts drives them through the daemon).

function guard(over: Partial<ConstructorParameters<typeof LoginGuard>[0]> = {}) {
  let t = 1_000_000;
  const forgotten = { n: 0 };
  const g = new LoginGuard({
    maxPerAddress: 10,
    maxPerUser: 6,
    burst: 3,
    maxTracked: 1000,
    now: () => t,
    onForgotten: () => forgotten.n++,
    ...over,
  });
  return { g, advance: (ms: number) => (t += ms), forgotten };
}

let n = 0;
const fail = (g: LoginGuard, address: string, user: string) =>
  g.end(g.begin(address, user, `guess-${n++}`), 'failed');

describe('failed-login limits (token buckets per address and per user name)', () => {
  it('allows a burst, then one failure per minute / limit, and says how long to wait', () => {
    const { g, advance } = guard();
    for (let i = 0; i < 3; i++) {
      expect(g.blockedMs('10.0.0.1', `u${i}`, 'x')).toBe(0);
      fail(g, '10.0.0.1', `u${i}`);
    }
    // 10 per minute: one more every 6 s
    expect(g.blockedMs('10.0.0.1', 'u9', 'x')).toBe(6000);
    expect(g.blockedMs('10.0.0.2', 'u9', 'x')).toBe(0);
    advance(6000);
    expect(g.blockedMs('10.0.0.1', 'u9', 'x')).toBe(0);
  });

  it('limits a user name across addresses; the shared session name is not limited by name', () => {
    const { g } = guard({ sharedUserNames: ['session'] });
    for (let i = 0; i < 3; i++) fail(g, `10.0.1.${i}`, 'sensor-1');
    expect(g.blockedMs('10.0.1.99', 'sensor-1', 'x')).toBe(10_000);
    for (let i = 0; i < 5; i++) fail(g, `10.0.2.${i}`, 'session');
    expect(g.blockedMs('10.0.2.99', 'session', 'x')).toBe(0);
  });

  it('counts a login from its start (concurrent guesses cannot all slip in) and takes back all but failures', () => {
    const { g } = guard();
    const pending = ['right', 'x', 'y'].map((pw) => g.begin('10.0.0.1', 'sensor-1', pw));
    expect(g.blockedMs('10.0.0.1', 'other', 'x')).toBeGreaterThan(0);
    g.end(pending[0]!, 'ok');
    g.end(pending[1]!, 'other');
    expect(g.blockedMs('10.0.0.1', 'other', 'x')).toBe(0);
    g.end(pending[2]!, 'failed');
  });

  it('a fleet logging in at once with one credential counts once', () => {
    const { g } = guard();
    const storm = Array.from({ length: 200 }, () => g.begin('10.0.0.1', 'fleet', 'shared-pw'));
    expect(g.blockedMs('10.0.0.1', 'fleet', 'other')).toBe(0);
    for (const a of storm) g.end(a, 'ok');
    expect(g.blockedMs('10.0.0.1', 'fleet', 'other')).toBe(0);
  });

  it('lets credentials that logged in before through a limited address and name', () => {
    const { g } = guard();
    g.end(g.begin('10.0.0.1', 'sensor-1', 'right'), 'ok');
    for (let i = 0; i < 5; i++) fail(g, '10.0.0.1', 'sensor-1');
    expect(g.blockedMs('10.0.0.1', 'sensor-1', 'wrong')).toBeGreaterThan(0);
    expect(g.blockedMs('10.0.0.1', 'sensor-1', 'right')).toBe(0);
  });

  it('keeps at most maxTracked entries per map, forgetting the oldest (counted)', () => {
    const { g, forgotten } = guard({ maxTracked: 100 });
    for (let i = 0; i < 250; i++) fail(g, `10.1.${i >> 8}.${i & 255}`, `user-${i}`);
    expect(g.tracked.addresses).toBeLessThanOrEqual(100);
    expect(g.tracked.users).toBeLessThanOrEqual(100);
    expect(forgotten.n).toBe(300);
  });

  it('keys long user names by a digest', () => {
    const { g } = guard();
    const long = 'x'.repeat(60_000);
    for (let i = 0; i < 3; i++) fail(g, `10.0.3.${i}`, long);
    expect(g.blockedMs('10.0.3.99', long, 'x')).toBeGreaterThan(0);
    expect(g.blockedMs('10.0.3.99', `${long}y`, 'x')).toBe(0);
  });
});

describe('key derivation slots', () => {
  it('runs at most maxConcurrent at once, queues maxQueued, refuses the rest', async () => {
    const slots = new DerivationSlots(1, 2);
    let running = 0;
    let most = 0;
    const job = () =>
      slots.run(async () => {
        most = Math.max(most, ++running);
        await new Promise((r) => setTimeout(r, 20));
        running--;
        return true;
      });
    const runs = [job(), job(), job(), job()];
    expect(runs.map((r) => r !== undefined)).toEqual([true, true, true, false]);
    expect(await Promise.all(runs.slice(0, 3))).toEqual([true, true, true]);
    expect(most).toBe(1);
    expect(job()).toBeDefined(); // room again
  });

  it('a dummy hash has the parameters of a real one and matches no password', () => {
    const real =
      'pbkdf2:sha256:1000$saltysalt$e2276b360243720a6364e76e1e6147f056c0417039b9ac5d0c4f218f46ccb9ec';
    expect(parseWerkzeugHash(dummyHash(real))).toMatchObject({
      method: 'pbkdf2',
      hash: 'sha256',
      iterations: 1000,
    });
    expect(parseWerkzeugHash(dummyHash())).toMatchObject({ method: 'scrypt', n: 32768, r: 8, p: 1 });
    expect(dummyHash()).not.toBe(dummyHash());
  });
});
