import { describe, expect, it } from 'vitest';
import { canPublish, canRead, canSubscribe, type Principal } from '../../src/broker/acl.js';
import { principalKey, SessionOwners } from '../../src/broker/sessions.js';

const anon: Principal = { username: null, role: 'admin', buildingId: null, anonymous: true };
const user = (username: string, role: Principal['role'] = 'dashboard', buildingId: number | null = null) =>
  ({ username, role, buildingId, anonymous: false }) as Principal;

describe('client id bindings (issue 12.2)', () => {
  it('another principal cannot claim a held id; the same one can (takeover by itself)', () => {
    const owners = new SessionOwners<object>();
    const a = {};
    const b = {};
    expect(owners.claim('dash-1', principalKey(user('ops')), a, true)).toBe(true);
    expect(owners.claim('dash-1', principalKey(user('sensor-1', 'sensor', 1)), b, false)).toBe(false);
    expect(owners.ownerOf('dash-1')).toBe('user:ops');
    // the same user name is the same principal, whatever the credential (password, certificate, session)
    expect(owners.claim('dash-1', principalKey(user('ops')), b, true)).toBe(true);
    // the old connection ending does not free an id its successor holds
    expect(owners.release('dash-1', a)).toBe(false);
    expect(owners.ownerOf('dash-1')).toBe('user:ops');
  });

  it('anonymous clients are one principal, distinct from any user name', () => {
    expect(principalKey(anon)).toBe(principalKey({ ...anon }));
    expect(principalKey(anon)).not.toBe(principalKey(user('anonymous')));
    const owners = new SessionOwners<object>();
    expect(owners.claim('x', principalKey(anon), {}, false)).toBe(true);
    expect(owners.claim('x', principalKey(anon), {}, false)).toBe(true);
    expect(owners.claim('x', principalKey(user('anonymous')), {}, false)).toBe(false);
  });

  it('a clean session is unbound when its connection ends; a persistent one when forgotten', () => {
    const owners = new SessionOwners<object>();
    const c = {};
    owners.claim('clean', 'user:a', c, false);
    expect(owners.release('clean', c)).toBe(false);
    expect(owners.size).toBe(0);
    const p = {};
    owners.claim('persistent', 'user:a', p, true);
    expect(owners.release('persistent', p)).toBe(true);
    expect(owners.ownerOf('persistent')).toBe('user:a');
    // back before the expiry: forget leaves a held id alone
    const again = {};
    owners.claim('persistent', 'user:a', again, true);
    owners.forget('persistent');
    expect(owners.ownerOf('persistent')).toBe('user:a');
    owners.release('persistent', again);
    owners.forget('persistent');
    expect(owners.size).toBe(0);
    // a clean takeover by the same principal ends the persistent session: unbound at its end
    const d = {};
    owners.claim('p2', 'user:a', {}, true);
    owners.claim('p2', 'user:a', d, false);
    owners.release('p2', d);
    expect(owners.size).toBe(0);
  });
});

describe('canRead (authorizeForward)', () => {
  it('grants exactly what canSubscribe grants, per topic', () => {
    const who = [anon, user('ops'), user('root', 'admin'), user('s1', 'sensor', 1), user('s', 'sensor')];
    const topics = [
      'sensors/building_001/1/r/power',
      'sensors',
      'sensors2/x',
      'alerts/building_001/x',
      'alerts',
      '$SYS/broker/heartbeat',
      'plain/topic',
      '',
      'sensor/x',
    ];
    for (const w of who)
      for (const t of topics) expect([w.role, t, canRead(w, t)]).toEqual([w.role, t, canSubscribe(w, t).ok]);
  });

  it('no client publishes on $ topics, admins and anonymous included', () => {
    for (const w of [anon, user('root', 'admin')]) {
      expect(canPublish(w, '$SYS/other/new/clients').ok).toBe(false);
      expect(canPublish(w, '$share/x').ok).toBe(false);
      expect(canPublish(w, 'plain/x').ok).toBe(true);
    }
  });
});
