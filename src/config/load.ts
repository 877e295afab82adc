import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import cron from 'node-cron';
import { parse as parseYaml } from 'yaml';
import { parseConfigRules } from '../alerts/rules.js';
import { IngestError } from '../errors.js';
import { originConfigProblems } from '../http/origin.js';
import { canonicalBuildingKey } from '../ingest/building.js';
import { redactUrl, splitUrlCredentials } from '../redact.js';
import { envName, type Field, fields, SCHEMA } from './schema.js';
import type { BuildingMeta, Config } from './types.js';

/** The package root, found by walking up: the same code runs from src/ (tests) and dist/src/ (bin). */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(resolve(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}
const PACKAGE_ROOT = packageRoot();
export const DEFAULT_CONFIG_FILE = resolve(PACKAGE_ROOT, 'config', 'default.yaml');

export interface LoadOptions {
  /** --config PATH */
  readonly configPath?: string;
  /** The environment to read overrides from; main passes process.env, tests pass their own. */
  readonly env: Readonly<Record<string, string | undefined>>;
}

type Plain = Record<string, unknown>;

function readYaml(path: string): Plain {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new IngestError(
      'EI_CONFIG_UNREADABLE',
      `cannot read config file ${path}: ${(err as Error).message}`,
    );
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new IngestError(
      'EI_CONFIG_UNREADABLE',
      `config file ${path} is not valid YAML: ${(err as Error).message}`,
    );
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new IngestError('EI_CONFIG_UNREADABLE', `config file ${path} must hold a mapping at the top level`);
  }
  return doc as Plain;
}

/** exported for its test */
export function deepMerge(base: Plain, over: Plain): Plain {
  // prototype-free: a "__proto__" key in a file is reported as unknown, never merged into a prototype
  const out: Plain = Object.assign(Object.create(null) as Plain, base);
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    if (v && typeof v === 'object' && !Array.isArray(v) && b && typeof b === 'object' && !Array.isArray(b)) {
      out[k] = deepMerge(b as Plain, v as Plain);
    } else {
      out[k] = v;
    }
  }
  return out;
}

function getPath(obj: Plain, path: string): unknown {
  let cur: unknown = obj;
  for (const part of path.split('.')) {
    if (!cur || typeof cur !== 'object') return undefined;
    cur = (cur as Plain)[part];
  }
  return cur;
}

function setPath(obj: Plain, path: string, value: unknown): void {
  const parts = path.split('.');
  let cur = obj;
  for (const part of parts.slice(0, -1)) {
    if (!cur[part] || typeof cur[part] !== 'object') cur[part] = {};
    cur = cur[part] as Plain;
  }
  cur[parts.at(-1)!] = value;
}

const BYTE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  kib: 1024,
  m: 1e6,
  mb: 1e6,
  mib: 1024 ** 2,
  g: 1e9,
  gb: 1e9,
  gib: 1024 ** 3,
};

export function parseBytes(raw: unknown): number | undefined {
  if (typeof raw === 'number') return Number.isInteger(raw) ? raw : undefined;
  if (typeof raw !== 'string') return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(raw);
  if (!m) return undefined;
  const unit = BYTE_UNITS[m[2]!.toLowerCase()];
  return unit === undefined ? undefined : Math.round(Number(m[1]) * unit);
}

/** Coerce one raw value (from YAML or env) to the field's type; a string is an error message. */
function coerce(field: Field, raw: unknown): { value: unknown } | { error: string } {
  switch (field.kind) {
    case 'string':
    case 'host':
      if (typeof raw === 'number') return { value: String(raw) };
      if (typeof raw !== 'string' || raw === '') return { error: 'must be a non-empty string' };
      return { value: raw };
    case 'url': {
      if (typeof raw !== 'string') return { error: 'must be a URL string' };
      try {
        new URL(raw);
      } catch {
        return { error: `"${redactUrl(raw)}" is not a valid URL` };
      }
      return { value: raw };
    }
    case 'enum':
      if (typeof raw !== 'string' || !field.values!.includes(raw)) {
        return { error: `must be one of ${field.values!.join(', ')} (got ${JSON.stringify(raw)})` };
      }
      return { value: raw };
    case 'bool':
      if (typeof raw === 'boolean') return { value: raw };
      if (typeof raw === 'string' && /^(true|1|yes|on)$/i.test(raw)) return { value: true };
      if (typeof raw === 'string' && /^(false|0|no|off)$/i.test(raw)) return { value: false };
      return { error: `must be true or false (got ${JSON.stringify(raw)})` };
    case 'list': {
      // a YAML list, or a comma-separated string (env)
      const items = Array.isArray(raw)
        ? raw.map((v) => (typeof v === 'string' || typeof v === 'number' ? String(v).trim() : ''))
        : typeof raw === 'string'
          ? raw.split(',').map((v) => v.trim())
          : undefined;
      if (!items || items.length === 0 || items.some((v) => v === ''))
        return { error: 'must be a list of non-empty strings (or a comma-separated string)' };
      return { value: items };
    }
    case 'int':
    case 'bytes': {
      const n =
        field.kind === 'bytes'
          ? parseBytes(raw)
          : typeof raw === 'string' && /^-?\d+$/.test(raw.trim())
            ? Number(raw)
            : raw;
      if (typeof n !== 'number' || !Number.isSafeInteger(n)) {
        return {
          error: `must be ${field.kind === 'bytes' ? 'a size such as 65536 or 1GiB' : 'an integer'} (got ${JSON.stringify(raw)})`,
        };
      }
      if (field.min !== undefined && n < field.min)
        return { error: `must be at least ${field.min} (got ${n})` };
      if (field.max !== undefined && n > field.max)
        return { error: `must be at most ${field.max} (got ${n})` };
      return { value: n };
    }
  }
}

/** kept here for callers that import it with the configuration (see src/redact.ts) */
export { redactUrl };

export function isLoopbackOnly(cfg: Pick<Config, 'mqtt' | 'http'>): boolean {
  return [cfg.mqtt.host, cfg.http.host].every(isLoopback);
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function parseBuildings(raw: unknown, errors: string[]): BuildingMeta[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) {
    errors.push('buildings: must be a list of {id, name, address}');
    return [];
  }
  const out: BuildingMeta[] = [];
  raw.forEach((b: unknown, i) => {
    const entry = b as Plain;
    if (!entry || typeof entry !== 'object' || !Number.isSafeInteger(entry.id) || (entry.id as number) < 1) {
      errors.push(`buildings[${i}].id: must be a positive integer`);
      return;
    }
    const id = entry.id as number;
    out.push({
      id,
      key: canonicalBuildingKey(id),
      name: typeof entry.name === 'string' ? entry.name : `building ${id}`,
      address: typeof entry.address === 'string' ? entry.address : '',
    });
  });
  return out;
}

// Lists the schema does not describe field by field: each is validated by its own parser.
const LISTS = new Set(['buildings', 'alerts.rules']);
// Top-level keys: the schema's sections plus the top-level lists.
const KNOWN_TOP_LEVEL = new Set([...Object.keys(SCHEMA), ...[...LISTS].filter((l) => !l.includes('.'))]);

function unknownKeys(doc: Plain, errors: string[]): void {
  const known = new Set([...fields()].map(([p]) => p));
  const walk = (node: Plain, prefix: string) => {
    for (const [k, v] of Object.entries(node)) {
      const path = prefix ? `${prefix}.${k}` : k;
      if (!prefix && !KNOWN_TOP_LEVEL.has(k)) errors.push(`${path}: unknown key`);
      else if (LISTS.has(path)) continue;
      else if (v && typeof v === 'object' && !Array.isArray(v) && !known.has(path)) walk(v as Plain, path);
      else if (prefix && !known.has(path)) errors.push(`${path}: unknown key`);
    }
  };
  walk(doc, '');
}

/**
 * Build the frozen configuration: file(s) → env overrides → validation. All
 * problems (single keys and cross-field checks) are collected and reported
 * together, each naming its key.
 */
export function loadConfig(opts: LoadOptions): Config {
  const { doc, sources } = readDocuments(opts);
  const errors: string[] = [];
  unknownKeys(doc, errors);
  const out = fieldValues(doc, opts.env, errors);
  const buildings = parseBuildings(doc.buildings, errors);
  const alertRules = parseConfigRules((doc.alerts as Plain | undefined)?.rules, errors);
  errors.push(...crossFieldProblems(out));
  if (errors.length) {
    throw new IngestError('EI_CONFIG_INVALID', `invalid configuration:\n  ${errors.join('\n  ')}`);
  }
  return deepFreeze(complete(out, { buildings, alertRules, sources })) as unknown as Config;
}

/** the config file (explicit, or the shipped default.yaml merged with config/local.yaml) */
function readDocuments(opts: LoadOptions): { doc: Plain; sources: string[] } {
  const explicit = opts.configPath ?? opts.env.ENERGY_INGEST_CONFIG;
  if (explicit) {
    const path = resolve(explicit);
    return { doc: readYaml(path), sources: [path] };
  }
  let doc = readYaml(DEFAULT_CONFIG_FILE);
  const sources = [DEFAULT_CONFIG_FILE];
  const local = resolve(dirname(DEFAULT_CONFIG_FILE), 'local.yaml');
  if (existsSync(local)) {
    doc = deepMerge(doc, readYaml(local));
    sources.push(local);
  }
  return { doc, sources };
}

/** every schema key: env over file over the schema's default, coerced to its kind */
function fieldValues(doc: Plain, env: LoadOptions['env'], errors: string[]): Plain {
  const out: Plain = {};
  for (const [path, field] of fields()) {
    const name = envName(path, field);
    const envRaw = env[name];
    let raw: unknown = getPath(doc, path);
    let origin = path;
    if (envRaw !== undefined && (envRaw !== '' || field.allowEmpty)) {
      raw = envRaw;
      origin = `${path} (env ${name})`;
    }
    if (raw === '' && field.allowEmpty) {
      setPath(out, path, '');
      continue;
    }
    if (raw === undefined || raw === null || raw === '') {
      if (field.default !== undefined)
        setPath(out, path, field.kind === 'list' ? String(field.default).split(',') : field.default);
      continue;
    }
    const r = coerce(field, raw);
    if ('error' in r) errors.push(`${origin}: ${r.error}`);
    else setPath(out, path, r.value);
  }
  // every section exists, even when none of its keys is set (postgres: {}, redis: {})
  for (const [path] of fields()) {
    const parts = path.split('.');
    for (let i = 1; i < parts.length; i++) {
      const section = parts.slice(0, i).join('.');
      if (getPath(out, section) === undefined) setPath(out, section, {});
    }
  }
  return out;
}

type Loose = {
  mqtt: Config['mqtt'];
  http: Config['http'];
  influx: Plain;
  auth: Plain;
  pipeline: Config['pipeline'];
  metadata: { refreshCron?: string; reloadRetryMinMs: number; reloadRetryMaxMs: number };
  postgres: { url?: string };
  redis: { url?: string };
  cluster: { mode: string; nodeId?: string };
};

/** checks across keys, reported with the single-key problems (never thrown on their own) */
export function crossFieldProblems(out: Plain): string[] {
  const cfg = out as unknown as Loose;
  const problems: string[] = [];
  if (cfg.mqtt.maxPacketBytes <= cfg.mqtt.maxPayloadBytes) {
    problems.push(
      'mqtt.maxPacketBytes: must exceed mqtt.maxPayloadBytes (payloads in between are dead-lettered as payload_too_large)',
    );
  }
  const httpTls = cfg.http?.tls ?? {};
  problems.push(...originConfigProblems(cfg.http?.allowedHosts, cfg.http?.allowedOrigins));
  if (Boolean(httpTls.cert) !== Boolean(httpTls.key))
    problems.push('http.tls: HTTPS needs both http.tls.cert and http.tls.key');
  const tls = cfg.mqtt.tls ?? {};
  if (tls.port !== undefined && (!tls.cert || !tls.key)) {
    problems.push('mqtt.tls.port: TLS needs mqtt.tls.cert and mqtt.tls.key');
  }
  const cronExpr = cfg.metadata?.refreshCron;
  if (cronExpr && !cron.validate(cronExpr))
    problems.push(`metadata.refreshCron: "${cronExpr}" is not a valid cron expression`);
  if (cfg.metadata.reloadRetryMaxMs < cfg.metadata.reloadRetryMinMs) {
    problems.push('metadata.reloadRetryMaxMs: must be at least metadata.reloadRetryMinMs');
  }
  const backupCfg = (out as { backup?: { cron?: string; to?: string } }).backup;
  if (backupCfg?.cron && !cron.validate(backupCfg.cron))
    problems.push(`backup.cron: "${backupCfg.cron}" is not a valid cron expression`);
  if (backupCfg?.cron && !backupCfg.to)
    problems.push('backup.cron: needs backup.to (a directory or s3://BUCKET/PREFIX)');
  const fc = (out as { forecast?: { cron?: string; minHistoryHours?: number; historyHours?: number } })
    .forecast;
  if (fc?.cron && !cron.validate(fc.cron))
    problems.push(`forecast.cron: "${fc.cron}" is not a valid cron expression`);
  if (
    fc?.minHistoryHours !== undefined &&
    fc.historyHours !== undefined &&
    fc.historyHours < fc.minHistoryHours
  )
    problems.push('forecast.historyHours: must be at least forecast.minHistoryHours');
  if (cfg.pipeline.retryMaxMs < cfg.pipeline.retryMinMs) {
    problems.push('pipeline.retryMaxMs: must be at least pipeline.retryMinMs');
  }
  const redisSessions = cfg.auth?.redisSessions === true;
  if (redisSessions && !cfg.redis?.url) problems.push('auth.redisSessions: needs REDIS_URL (redis.url)');
  problems.push(...upstreamProblems(out));
  if (cfg.cluster.mode === 'redis' && !cfg.redis?.url)
    problems.push('cluster.mode: redis needs REDIS_URL (redis.url)');
  if (cfg.cluster.nodeId !== undefined && !/^[A-Za-z0-9_.-]{1,64}$/.test(cfg.cluster.nodeId))
    problems.push('cluster.nodeId: 1 to 64 of A-Z a-z 0-9 _ . - (it names Redis keys and channels)');
  const hosts = [cfg.mqtt.host, cfg.http.host];
  const anon = cfg.auth?.allowAnonymous;
  const allowAnonymous = typeof anon === 'boolean' ? anon : hosts.every(isLoopback);
  const hasCredentialSource = Boolean(cfg.postgres?.url) || (redisSessions && Boolean(cfg.redis?.url));
  if (!hosts.every(isLoopback) && !allowAnonymous && !hasCredentialSource) {
    problems.push(
      `auth.allowAnonymous: listeners on ${hosts.filter((h) => !isLoopback(h)).join(', ')} need credentials: ` +
        'set DATABASE_URL (devices in mqtt_devices, see energy-ingest passwd) or allow anonymous clients explicitly with ALLOW_ANONYMOUS=true',
    );
  }
  return problems;
}

/** what load.ts decides beyond single keys, once everything is valid */
function complete(out: Plain, extra: { buildings: unknown; alertRules: unknown; sources: string[] }): Plain {
  const cfg = out as unknown as Loose;
  cfg.influx.database ??= cfg.influx.bucket;
  cfg.cluster.nodeId ??=
    hostname()
      .replace(/[^A-Za-z0-9_.-]/g, '-')
      .slice(0, 64) || 'node';
  if (typeof cfg.influx.url === 'string') {
    // fetch refuses a URL with user:password@ (and would repeat it in its error): the credentials
    // go to the v1 client's Basic auth instead; INFLUX_USERNAME/INFLUX_PASSWORD, when set, win
    const split = splitUrlCredentials(cfg.influx.url);
    cfg.influx.url = split.url;
    if (split.username !== undefined) cfg.influx.username ??= split.username;
    if (split.password !== undefined) cfg.influx.password ??= split.password;
  }
  const upstream = (out as { upstream: { url?: string; username?: string; password?: string } }).upstream;
  if (typeof upstream.url === 'string') {
    // the URL is printed (redacted) in checks and logs; its credentials go to the MQTT CONNECT instead
    const split = splitUrlCredentials(upstream.url);
    upstream.url = split.url;
    if (split.username !== undefined) upstream.username ??= split.username;
    if (split.password !== undefined) upstream.password ??= split.password;
  }
  const hosts = [cfg.mqtt.host, cfg.http.host];
  const explicitAnon = cfg.auth?.allowAnonymous;
  cfg.auth = {
    ...cfg.auth,
    allowAnonymous: typeof explicitAnon === 'boolean' ? explicitAnon : hosts.every(isLoopback),
    allowAnonymousExplicit: typeof explicitAnon === 'boolean',
    redisSessions: cfg.auth?.redisSessions === true,
  };
  out.mqtt = { ...cfg.mqtt, tls: cfg.mqtt.tls ?? {} };
  out.buildings = extra.buildings;
  (out.alerts as Plain).rules = extra.alertRules;
  out.sources = extra.sources;
  out.dataDir = isAbsolute(out.dataDir as string) ? out.dataDir : resolve(out.dataDir as string);
  return out;
}

/** bridge mode (contract section 15): the upstream URL's scheme, and something to ingest from */
function upstreamProblems(out: Plain): string[] {
  const up = out.upstream as {
    url?: string;
    shareGroup: string;
    reconnectMinMs: number;
    reconnectMaxMs: number;
  };
  const mqttEnabled = (out.mqtt as { enabled: boolean }).enabled;
  const problems: string[] = [];
  if (up.url !== undefined && !/^mqtts?:$/.test(new URL(up.url).protocol))
    problems.push(`upstream.url: must be mqtt:// or mqtts:// (got "${redactUrl(up.url)}")`);
  if (!mqttEnabled && up.url === undefined)
    problems.push('mqtt.enabled: false needs upstream.url (UPSTREAM_MQTT_URL): there would be no input');
  // MQTT 5 §4.8.2: a ShareName holds no "/", "+" or "#"
  if (/[/+#]/.test(up.shareGroup))
    problems.push(`upstream.shareGroup: must not contain "/", "+" or "#" (got "${up.shareGroup}")`);
  if (up.reconnectMaxMs < up.reconnectMinMs)
    problems.push('upstream.reconnectMaxMs: must be at least upstream.reconnectMinMs');
  return problems;
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

/** The effective configuration with every secret replaced, for printing. */
export function redactedConfig(cfg: Config): Plain {
  const copy = JSON.parse(JSON.stringify(cfg)) as Plain;
  for (const [path, field] of fields()) {
    const v = getPath(copy, path);
    if (v === undefined) continue;
    // any URL may carry a password, secret-flagged or not
    if (field.kind === 'url') setPath(copy, path, redactUrl(String(v)));
    else if (field.secret) setPath(copy, path, '***');
  }
  delete copy.sources;
  return copy;
}
