// The system's Redis sessions (contract section 9, auth.redisSessions):
// session:{id} = {"user_id","username","role","login_time","expires_at"}.
// One parser for the login and for the re-checks of live session logins
// (liveRights.ts), so both read a session alike.

/**
 * `expires_at` as epoch milliseconds, or undefined when it is not a date.
 *
 * Only ISO 8601 / RFC 3339 date-times are read: `YYYY-MM-DD`, `T` or a space,
 * `HH:MM[:SS[.fraction]]`, then `Z`, `±HH:MM`, `±HHMM`, `±HH` or no zone. A
 * time without a zone is read as UTC: the system's Flask app writes naive
 * `datetime.utcnow().isoformat()` values, and reading them in the daemon's
 * local zone would move every expiry by the host's offset. Anything else is
 * refused, including what `Date.parse` would guess at ("never 2999" is the
 * year 2999 to V8), impossible dates (February 30) and times (25:00).
 */
export function parseExpiresAt(value: unknown): number | undefined {
  if (typeof value !== 'string' || value.length > 64) return undefined;
  const m =
    /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(Z|z|[+-]\d{2}(?::?\d{2})?)?$/.exec(
      value,
    );
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s = '0', frac = '', zone = 'Z'] = m as unknown as string[];
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  const hour = Number(h);
  const minute = Number(mi);
  const second = Number(s);
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return undefined;
  const ms = frac ? Math.floor(Number(`0.${frac}`) * 1000) : 0;
  const utc = Date.UTC(year, month - 1, day, hour, minute, second, ms);
  // Date.UTC rolls February 30 over into March: a date that does not round-trip does not exist
  const check = new Date(utc);
  if (check.getUTCFullYear() !== year || check.getUTCMonth() !== month - 1 || check.getUTCDate() !== day)
    return undefined;
  let offsetMin = 0;
  if (zone !== 'Z' && zone !== 'z') {
    const sign = zone[0] === '-' ? -1 : 1;
    const digits = zone.slice(1).replace(':', '');
    const oh = Number(digits.slice(0, 2));
    const om = digits.length > 2 ? Number(digits.slice(2)) : 0;
    if (oh > 23 || om > 59) return undefined;
    offsetMin = sign * (oh * 60 + om);
  }
  return utc - offsetMin * 60_000;
}

export type SessionCheck =
  | { ok: true; username: string | null; role: string | null; expiresAt: number }
  | { ok: false; reason: 'session_gone' | 'session_malformed' | 'session_expired' };

/** A session:{id} value (null: no such key) as of `now`. */
export function readSession(raw: string | null, now: number): SessionCheck {
  if (raw === null) return { ok: false, reason: 'session_gone' };
  let s: unknown;
  try {
    s = JSON.parse(raw);
  } catch {
    return { ok: false, reason: 'session_malformed' };
  }
  if (typeof s !== 'object' || s === null || Array.isArray(s))
    return { ok: false, reason: 'session_malformed' };
  const o = s as { username?: unknown; role?: unknown; expires_at?: unknown };
  const expiresAt = parseExpiresAt(o.expires_at);
  // an unreadable expiry is no expiry we can enforce: refused like an expired session
  if (expiresAt === undefined || expiresAt <= now) return { ok: false, reason: 'session_expired' };
  return {
    ok: true,
    username: typeof o.username === 'string' ? o.username : null,
    role: typeof o.role === 'string' ? o.role : null,
    expiresAt,
  };
}
