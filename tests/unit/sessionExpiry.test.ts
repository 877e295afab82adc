import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { Authenticator } from '../../src/broker/auth.js';
import { VerifiedCache } from '../../src/broker/credentials.js';
import { parseExpiresAt } from '../../src/broker/sessionRecord.js';
import { RateLimitedLog } from '../../src/log.js';
import { Metrics } from '../../src/metrics.js';

// issue 18 item 3: expires_at of a Redis session is read strictly (a time
// without zone is UTC, documented in SECURITY.md); what Date.parse would guess
// at ("never 2999" is the year 2999 to V8) is refused.

const NOW = Date.UTC(2026, 10, 30, 12, 0, 0);

function sessionAuth(values: Record<string, string>) {
  const log = pino({ level: 'silent' });
  const metrics = new Metrics();
  const auth = new Authenticator({
    allowAnonymous: false,
    devices: () => [],
    lookupSession: async (id) => values[id] ?? null,
    now: () => NOW,
    cache: new VerifiedCache(),
    metrics,
    log,
    refusals: new RateLimitedLog(log),
  });
  const login = async (expires: unknown) => {
    values.s1 = JSON.stringify({ user_id: 1, username: 'kim', role: 'admin', expires_at: expires });
    const r = await auth.authenticate('c1', 'session', Buffer.from('s1'));
    return r.ok ? 'ok' : r.reason;
  };
  return { login };
}

describe('Redis session expires_at, read strictly', () => {
  it('refuses values Date.parse would accept loosely', async () => {
    const { login } = sessionAuth({});
    for (const bad of [
      'never 2999',
      'Sat, 01 Jan 2999 00:00:00 GMT',
      '2999',
      '2999-01-01', // a date without a time: no instant
      '01/01/2999 10:00',
      '2999-02-30T00:00:00Z', // no such day
      '2999-01-01T25:00:00Z',
      '2999-01-01T10:00:00+25:00',
      '2999-01-01T10:00:00Z trailing',
      ' 2999-01-01T10:00:00Z',
      '',
      4102444800, // numbers are not the guide's format
      null,
    ]) {
      expect(await login(bad), String(bad)).toBe('session_expired');
    }
  });

  it('reads a time without zone as UTC, and honours Z and offsets', async () => {
    const { login } = sessionAuth({});
    // Python's naive datetime.utcnow().isoformat(), one minute either side of NOW (12:00 UTC)
    expect(await login('2026-11-30T12:01:00.123456')).toBe('ok');
    expect(await login('2026-11-30T11:59:00.123456')).toBe('session_expired');
    expect(await login('2026-11-30 12:01:00')).toBe('ok');
    expect(await login('2026-11-30T12:01Z')).toBe('ok');
    // 21:01 in Seoul is 12:01 UTC; 20:59 there is 11:59 UTC
    expect(await login('2026-11-30T21:01:00+09:00')).toBe('ok');
    expect(await login('2026-11-30T20:59:00+0900')).toBe('session_expired');
    // 07:01 in New York (-05) is 12:01 UTC
    expect(await login('2026-11-30T07:01:00-05')).toBe('ok');
    expect(await login('2026-11-30T06:59:00-05:00')).toBe('session_expired');
  });
});

describe('parseExpiresAt', () => {
  it('reads the accepted spellings to the same instant', () => {
    const at = Date.UTC(2026, 10, 30, 12, 0, 5, 123);
    for (const v of [
      '2026-11-30T12:00:05.123',
      '2026-11-30T12:00:05.123456789',
      '2026-11-30 12:00:05,123',
      '2026-11-30T12:00:05.123z',
      '2026-11-30T21:00:05.123+09:00',
      '2026-11-30T21:00:05.123+0900',
      '2026-11-30T02:30:05.123-09:30',
    ]) {
      expect(parseExpiresAt(v), v).toBe(at);
    }
    expect(parseExpiresAt('2028-02-29T00:00:00Z')).toBe(Date.UTC(2028, 1, 29));
  });
  it('refuses everything else', () => {
    for (const v of [
      '2027-02-29T00:00:00Z',
      '2026-11-30T12:60:00Z',
      '2026-11-30T12:00:60Z',
      '2026-13-01T00:00Z',
      '2026-11-30T12:00:00.Z',
      `2026-11-30T12:00:00.${'1'.repeat(60)}`,
      '2026-11-30T12:00:00+09:60',
      '٢٠٢٦-11-30T12:00:00Z',
      {},
      undefined,
    ]) {
      expect(parseExpiresAt(v), String(v)).toBeUndefined();
    }
  });
});
