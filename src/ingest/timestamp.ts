// Timestamps in payloads: ISO 8601 with a zone, epoch milliseconds, or epoch
// seconds (a number below 1e11, i.e. before year 5138 in seconds but 1973 in ms).

const ISO_WITH_ZONE = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}(:?\d{2})?)$/;
const EPOCH_SECONDS_LIMIT = 1e11;

export type TimestampResult = { ok: true; ms: number } | { ok: false; detail: string };

export function parseTimestamp(raw: unknown): TimestampResult {
  let n: number;
  if (typeof raw === 'number') {
    n = raw;
  } else if (typeof raw === 'string' && /^\d+(\.\d+)?$/.test(raw.trim())) {
    n = Number(raw);
  } else if (typeof raw === 'string') {
    if (!ISO_WITH_ZONE.test(raw)) {
      return { ok: false, detail: 'timestamp must be ISO 8601 with a zone, epoch ms or epoch s' };
    }
    const ms = Date.parse(normaliseIso(raw));
    if (!Number.isFinite(ms))
      return { ok: false, detail: `timestamp "${raw.slice(0, 40)}" is not a valid date` };
    return { ok: true, ms };
  } else {
    return { ok: false, detail: 'timestamp must be a string or a number' };
  }
  const ms = epochNumberMs(n);
  if (Number.isNaN(ms)) return { ok: false, detail: 'timestamp must be a non-negative finite number' };
  return { ok: true, ms };
}

/** A numeric timestamp (epoch s or ms) as epoch ms; NaN when it is not one. No object: parse's fast path. */
export function epochNumberMs(n: number): number {
  if (!Number.isFinite(n) || n < 0) return Number.NaN;
  return Math.round(n < EPOCH_SECONDS_LIMIT ? n * 1000 : n);
}

/** V8's Date.parse wants "T" and a "+hh:mm" zone; ISO 8601 also allows " ", "+hhmm" and "+hh". */
function normaliseIso(raw: string): string {
  let s = raw.replace(' ', 'T');
  const zone = /([+-])(\d{2})(\d{2})?$/.exec(s);
  if (zone && !/[+-]\d{2}:\d{2}$/.test(s)) {
    s = s.slice(0, zone.index) + `${zone[1]}${zone[2]}:${zone[3] ?? '00'}`;
  }
  return s;
}
