import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { AlertEvent } from '../alerts/evaluator.js';
import { canonicalBuildingKey, parseBuildingSegment } from '../ingest/building.js';
import type { MetadataSnapshot } from '../metadata/snapshot.js';
import type { Metrics } from '../metrics.js';
import { json, type Route } from './server.js';
import { STATUS_PAGE, STATUS_SCRIPT, STATUS_STYLE } from './statusPage.js';

// The HTTP routes of contract section 10, over what the app exposes. Which
// of them need a login is the server's business (src/http/server.ts).

export interface RouteDeps {
  readonly metrics: Metrics;
  readiness(): Promise<{ ready: boolean; body: unknown }>;
  status(): unknown;
  latest(): unknown;
  activeAlerts(building?: string): AlertEvent[];
  snapshot(): MetadataSnapshot;
  /** the stored forecast's JSON text (contract section 17), null when there is none; absent: no Redis */
  forecast?(buildingKey: string): Promise<string | null>;
  /** a building's kWh of its last hours (status page chart); absent: no PostgreSQL */
  recentEnergy?(buildingId: number, hours: number): Promise<Array<[number, number]>>;
  /** the cluster's live nodes (contract section 14); none in standalone mode */
  cluster?(): Promise<unknown[]>;
}

/** a stored value that is not JSON (written by something else) reads as no forecast */
function parseOrNull(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** The building of /api/…/{building_id} (canonical key or bare id), or undefined. */
function buildingOf(url: string | undefined, prefix: string): { id: number; key: string } | undefined {
  const path = (url ?? '/').split('?')[0]!;
  let segment: string;
  try {
    segment = decodeURIComponent(path.slice(prefix.length));
  } catch {
    return undefined;
  }
  const id = parseBuildingSegment(segment);
  return id === undefined ? undefined : { id, key: canonicalBuildingKey(id) };
}

/** /api/alerts/active answers one page: `limit` alerts (default, at most MAX_PAGE) from `offset` */
const DEFAULT_PAGE = 500;
const MAX_PAGE = 5000;

function pageParam(v: string | null, def: number, max: number): number | undefined {
  if (v === null) return def;
  if (!/^\d{1,9}$/.test(v)) return undefined;
  return Math.min(Number(v), max);
}

const PAGE_HEADERS = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  // Scripts, styles and connections from this origin only (CSP3 'self' covers ws:/wss: to the same
  // host and port), nothing inline: HTML that slipped into a rendered field could neither run nor
  // phone home. No framing (clickjacking), no <base> or form targets elsewhere.
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

const ASSET_HEADERS = {
  'cache-control': 'no-cache',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

let bundle: Buffer | null = null;
/** MQTT.js's browser build, for the status page (served by the daemon: no CDN) */
function mqttBrowserBundle(): Buffer {
  bundle ??= readFileSync(
    join(dirname(createRequire(import.meta.url).resolve('mqtt/package.json')), 'dist', 'mqtt.min.js'),
  );
  return bundle;
}

export function routes(d: RouteDeps): Record<string, Route> {
  return {
    '/health': (_req, res) => json(res, 200, { status: 'ok' }),
    '/ready': async (_req, res) => {
      const r = await d.readiness();
      json(res, r.ready ? 200 : 503, r.body);
    },
    '/metrics': async (_req, res) => {
      const body = await d.metrics.render();
      res.writeHead(200, { 'content-type': d.metrics.contentType });
      res.end(body);
    },
    '/': (_req, res) => {
      res.writeHead(200, PAGE_HEADERS);
      res.end(STATUS_PAGE);
    },
    // the page's own script and style: revalidated, so a daemon upgrade never pairs an old script with a new page
    '/assets/status.js': (_req, res) => {
      res.writeHead(200, { ...ASSET_HEADERS, 'content-type': 'application/javascript; charset=utf-8' });
      res.end(STATUS_SCRIPT);
    },
    '/assets/status.css': (_req, res) => {
      res.writeHead(200, { ...ASSET_HEADERS, 'content-type': 'text/css; charset=utf-8' });
      res.end(STATUS_STYLE);
    },
    '/assets/mqtt.min.js': (_req, res) => {
      res.writeHead(200, {
        'content-type': 'application/javascript; charset=utf-8',
        'cache-control': 'public, max-age=3600',
        'x-content-type-options': 'nosniff',
      });
      res.end(mqttBrowserBundle());
    },
    '/api/status': (_req, res) => json(res, 200, d.status()),
    '/api/latest': (_req, res) => json(res, 200, d.latest()),
    '/api/alerts/active': (req, res) => {
      const params = new URL(req.url ?? '/', 'http://x').searchParams;
      const building = params.get('building_id');
      const id = building ? parseBuildingSegment(building) : undefined;
      if (building && id === undefined)
        return json(res, 400, { error: `building_id: "${building}" is not a building id` });
      const offset = pageParam(params.get('offset'), 0, Number.MAX_SAFE_INTEGER);
      const limit = pageParam(params.get('limit'), DEFAULT_PAGE, MAX_PAGE);
      // limit 0 would hand back next_offset === offset forever
      if (offset === undefined || !limit)
        return json(res, 400, { error: 'offset must be an integer ≥ 0 and limit an integer ≥ 1' });
      const active = d.activeAlerts(id === undefined ? undefined : canonicalBuildingKey(id));
      // count is every active alert; a bounded page of them (newest first), next_offset when more follow
      const page = active.slice(offset, offset + limit);
      const body: { count: number; alerts: AlertEvent[]; next_offset?: number } = {
        count: active.length,
        alerts: page,
      };
      if (offset + page.length < active.length) body.next_offset = offset + page.length;
      json(res, 200, body);
    },
    // contract section 17: the stored forecast as it is in Redis, 404 when there is none
    '/api/forecast/': async (req, res) => {
      const b = buildingOf(req.url, '/api/forecast/');
      if (!b) return json(res, 400, { error: 'not a building id (building_NNN or a number)' });
      let text: string | null;
      try {
        text = d.forecast ? await d.forecast(b.key) : null;
      } catch {
        return json(res, 503, { error: 'Redis did not answer' });
      }
      if (text === null) return json(res, 404, { error: 'no forecast', building_id: b.key });
      res.writeHead(200, {
        'content-type': 'application/json; charset=utf-8',
        'cache-control': 'no-store',
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
      });
      res.end(text);
    },
    // the status page's energy chart: the last 48 complete hours and the forecast, in one answer
    '/api/energy/': async (req, res) => {
      const b = buildingOf(req.url, '/api/energy/');
      if (!b) return json(res, 400, { error: 'not a building id (building_NNN or a number)' });
      // each half on its own: PostgreSQL down still shows the forecast, Redis down the history
      const [history, forecast] = await Promise.all([
        d.recentEnergy ? d.recentEnergy(b.id, 48).catch(() => []) : [],
        d.forecast ? d.forecast(b.key).catch(() => null) : null,
      ]);
      json(res, 200, {
        building_id: b.key,
        history: history.map(([h, kwh]) => ({
          hour: new Date(h * 3_600_000).toISOString(),
          kwh: Math.round(kwh * 1000) / 1000,
        })),
        forecast: forecast === null ? null : parseOrNull(forecast),
      });
    },
    '/api/cluster': async (_req, res) => {
      try {
        json(res, 200, { nodes: d.cluster ? await d.cluster() : [] });
      } catch (err) {
        json(res, 503, { error: `cluster registry unavailable: ${(err as Error).message}` });
      }
    },
    '/api/buildings': (_req, res) => {
      const s = d.snapshot();
      json(res, 200, { source: s.source, loaded_at: s.loadedAt, buildings: s.buildings });
    },
  };
}
