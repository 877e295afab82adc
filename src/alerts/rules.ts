import { createHash } from 'node:crypto';
import type { AlertRuleRow } from '../metadata/snapshot.js';

// Alert rules: one shape for config rules and alert_rules rows, validation
// with messages naming the field, and the merge where a table row wins.

export interface AlertRule {
  readonly id: string;
  readonly sensorType: string;
  /** null: every building */
  readonly buildingId: number | null;
  readonly floor: string | null;
  readonly room: string | null;
  readonly above: number | null;
  readonly below: number | null;
  readonly hysteresis: number;
  readonly forSeconds: number;
  readonly offlineAfterSeconds: number | null;
  readonly severity: string;
  readonly message: string | null;
  readonly enabled: boolean;
}

type Raw = Record<string, unknown>;

/** snake_case (table, contract) and camelCase (config) both accepted */
function pick(raw: Raw, snake: string): unknown {
  if (raw[snake] !== undefined) return raw[snake];
  const camel = snake.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
  return raw[camel];
}

const KNOWN = new Set(
  [
    'id',
    'sensor_type',
    'building_id',
    'floor',
    'room',
    'above',
    'below',
    'hysteresis',
    'for_seconds',
    'offline_after_seconds',
    'severity',
    'message',
    'enabled',
    'updated_at',
  ].flatMap((k) => [k, k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())]),
);

/**
 * A rule id becomes the last level of its MQTT topic (alerts/…/{rule_id}) and
 * of a Redis hash field: `#`/`+` would make a PUBLISH topic with wildcards, `/`
 * adds levels (too many and the alert is never delivered), and a control
 * character sent libmosquitto subscribers of the retained alert into a
 * reconnect loop. Hence one level from a small, printable set.
 */
export const RULE_ID = /^[A-Za-z0-9_.:-]{1,64}$/;
const RULE_ID_RULE =
  'is not a valid rule id: 1 to 64 characters from A-Z a-z 0-9 _ . : - (it is an MQTT topic level)';

/**
 * Validates one rule; returns the rule or the list of problems, each naming
 * its field. `where` prefixes the messages (e.g. `alerts.rules[2]`).
 */
export function parseRule(raw: unknown, where: string): { rule: AlertRule } | { errors: string[] } {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw))
    return { errors: [`${where}: must be a mapping`] };
  const r = raw as Raw;
  const errors: string[] = [];
  for (const k of Object.keys(r)) if (!KNOWN.has(k)) errors.push(`${where}.${k}: unknown key`);

  const str = (field: string, required: boolean): string | null => {
    const v = pick(r, field);
    if (v === undefined || v === null) {
      if (required) errors.push(`${where}.${field}: required`);
      return null;
    }
    if (typeof v !== 'string' || v === '' || Buffer.byteLength(v) > (field === 'message' ? 1000 : 64)) {
      errors.push(
        `${where}.${field}: must be a non-empty string of at most ${field === 'message' ? 1000 : 64} bytes`,
      );
      return null;
    }
    return v;
  };
  const num = (field: string, opts: { min?: number; integer?: boolean } = {}): number | null => {
    let v = pick(r, field);
    if (v === undefined || v === null) return null;
    if (typeof v === 'string' && v.trim() !== '') v = Number(v);
    if (typeof v !== 'number' || !Number.isFinite(v) || (opts.integer && !Number.isInteger(v))) {
      errors.push(`${where}.${field}: must be a finite ${opts.integer ? 'integer' : 'number'}`);
      return null;
    }
    if (opts.min !== undefined && v < opts.min) {
      errors.push(`${where}.${field}: must not be below ${opts.min} (got ${v})`);
      return null;
    }
    return v;
  };

  const idRaw = pick(r, 'id');
  let id: string | null = null;
  if (idRaw === undefined || idRaw === null) errors.push(`${where}.id: required`);
  else if (typeof idRaw !== 'string' || !RULE_ID.test(idRaw))
    errors.push(`${where}.id: ${JSON.stringify(idRaw)} ${RULE_ID_RULE}`);
  else id = idRaw;
  const sensorType = str('sensor_type', true);
  const buildingId = num('building_id', { min: 1, integer: true });
  const floor = str('floor', false);
  const room = str('room', false);
  const above = num('above');
  const below = num('below');
  const hysteresis = num('hysteresis', { min: 0 }) ?? 0;
  const forSeconds = num('for_seconds', { min: 0, integer: true }) ?? 0;
  const offlineAfterSeconds = num('offline_after_seconds', { min: 1, integer: true });
  const severity = str('severity', false) ?? 'warning';
  const message = str('message', false);
  const enabledRaw = pick(r, 'enabled');
  if (enabledRaw !== undefined && enabledRaw !== null && typeof enabledRaw !== 'boolean')
    errors.push(`${where}.enabled: must be true or false`);
  const enabled = enabledRaw !== false;

  const hasThreshold = above !== null || below !== null;
  if (!hasThreshold && offlineAfterSeconds === null && !errors.some((e) => /above|below|offline/.test(e))) {
    errors.push(`${where}: needs above, below or offline_after_seconds (a rule with none can never raise)`);
  }
  if (hasThreshold && offlineAfterSeconds !== null) {
    // Both would be active at once on the one topic/hash field the contract gives a rule.
    errors.push(
      `${where}: a rule is either a threshold rule (above/below) or an offline rule (offline_after_seconds); split it into two rules`,
    );
  }
  if (above !== null && below !== null && below > above - hysteresis) {
    // otherwise one value could hold both conditions: the band must leave room for the hysteresis
    errors.push(`${where}: below (${below}) must not exceed above − hysteresis (${above - hysteresis})`);
  }
  if (errors.length) return { errors };
  return {
    rule: {
      id: id!,
      sensorType: sensorType!,
      buildingId,
      floor,
      room,
      above,
      below,
      hysteresis,
      forSeconds,
      offlineAfterSeconds,
      severity,
      message,
      enabled,
    },
  };
}

/** Config rules: every problem is a configuration error (collected by the caller). */
export function parseConfigRules(raw: unknown, errors: string[]): AlertRule[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) {
    errors.push('alerts.rules: must be a list of rules');
    return [];
  }
  const out: AlertRule[] = [];
  const seen = new Set<string>();
  raw.forEach((entry, i) => {
    const r = parseRule(entry, `alerts.rules[${i}]`);
    if ('errors' in r) errors.push(...r.errors);
    else if (seen.has(r.rule.id)) errors.push(`alerts.rules[${i}].id: duplicate id "${r.rule.id}"`);
    else {
      seen.add(r.rule.id);
      out.push(r.rule);
    }
  });
  return out;
}

/**
 * The effective rule set: table rows win over config rules with the same id.
 * A row the daemon cannot use is skipped and reported (the table is edited by
 * other tools; one bad row must not stop the others).
 */
export function mergeRules(
  configRules: readonly AlertRule[],
  rows: readonly AlertRuleRow[],
  onInvalid: (id: string, problems: string[], row: AlertRuleRow) => void,
): AlertRule[] {
  const byId = new Map<string, AlertRule>();
  for (const r of configRules) byId.set(r.id, r);
  for (const row of rows) {
    const r = parseRule(row, `alert_rules[id=${row.id}]`);
    if ('errors' in r) {
      onInvalid(row.id, r.errors, row);
      byId.delete(row.id);
    } else byId.set(r.rule.id, r.rule);
  }
  return [...byId.values()].filter((r) => r.enabled);
}

/**
 * Which invalid alert_rules rows were already reported, so that a row is
 * logged once per change rather than on every reload (a NOTIFY burst re-logged
 * every invalid row per reload). Keyed by id with a hash of the row's content:
 * an edited row is news again. Only the rows invalid in the latest merge are
 * kept, so it is bounded by the table itself (already held in the snapshot);
 * a row fixed and broken again is reported again.
 */
export class InvalidRowLog {
  private reported = new Map<string, string>();

  /**
   * Merge like mergeRules, calling `report` only for invalid rows not
   * reported in this shape before.
   */
  merge(
    configRules: readonly AlertRule[],
    rows: readonly AlertRuleRow[],
    report: (id: string, problems: string[]) => void,
  ): AlertRule[] {
    const now = new Map<string, string>();
    const rules = mergeRules(configRules, rows, (id, problems, row) => {
      const hash = createHash('sha256').update(JSON.stringify(row)).digest('base64url');
      now.set(id, hash);
      if (this.reported.get(id) !== hash) report(id, problems);
    });
    this.reported = now;
    return rules;
  }
}

/** Rules that apply to one series, in the order given (the evaluator passes them sorted by id). */
export function matchingRules(
  rules: readonly AlertRule[],
  buildingId: number,
  floor: string,
  room: string,
  sensorType: string,
): AlertRule[] {
  return rules.filter(
    (r) =>
      r.sensorType === sensorType &&
      (r.buildingId === null || r.buildingId === buildingId) &&
      (r.floor === null || r.floor === floor) &&
      (r.room === null || r.room === room),
  );
}
