import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { TLS_CIPHERS, TLS_MIN_VERSION } from '../tlsCiphers.js';
import type { BrowserGuard } from './origin.js';

export type Route = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

/**
 * Says whether a request to a protected path may proceed (HTTP Basic against
 * the MQTT credential sources), or that the login is refused for now: 429 past
 * the failed-login limits, 503 while key derivations are all taken.
 */
export type Guard = (
  user: string | undefined,
  password: string | undefined,
  address: string | undefined,
) => Promise<boolean | { status: 429 | 503; retryAfterS: number }>;

const COMMON_HEADERS = { 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer' };

export function json(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    ...COMMON_HEADERS,
    ...headers,
  });
  res.end(text);
}

/** /health, /ready and /metrics stay open for probes and scrapers; the rest may need credentials. */
const OPEN = new Set(['/health', '/ready', '/metrics']);

function basicAuth(req: IncomingMessage): { user?: string; password?: string } {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(req.headers.authorization ?? '');
  if (!m) return {};
  const text = Buffer.from(m[1]!, 'base64').toString('utf8');
  const i = text.indexOf(':');
  return i < 0 ? {} : { user: text.slice(0, i), password: text.slice(i + 1) };
}

/**
 * /health answers whatever the Host: probes (kubelet, haproxy) send the pod's
 * address or their own idea of a name, and {"status":"ok"} tells a rebinding
 * page nothing.
 */
const ANY_HOST = new Set(['/health']);

/**
 * A route whose key ends in "/" also answers every path below it with one more
 * segment (`/api/forecast/` → `/api/forecast/building_001`); it reads the
 * segment from req.url itself.
 */
function prefixRoute(routes: Readonly<Record<string, Route>>, path: string): Route | undefined {
  const slash = path.lastIndexOf('/');
  if (slash <= 0 || slash === path.length - 1) return undefined;
  const prefix = path.slice(0, slash + 1);
  return Object.hasOwn(routes, prefix) ? routes[prefix] : undefined;
}

/**
 * A plain node:http server with an exact-path GET route table; /mqtt upgrades
 * are handled by the broker (which asks the same BrowserGuard about them).
 */
export function createHttpServer(
  routes: Readonly<Record<string, Route>>,
  guard?: Guard,
  tls?: { readonly cert: Buffer; readonly key: Buffer },
  browsers?: BrowserGuard,
): Server {
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0]!;
    if (browsers && !ANY_HOST.has(path)) {
      const v = browsers.request(req);
      // 421 Misdirected Request: this server does not answer for that name (a DNS-rebound page)
      if (!v.ok) return json(res, v.status, { error: v.detail });
    }
    const route = Object.hasOwn(routes, path) ? routes[path] : prefixRoute(routes, path);
    if (!route) return json(res, 404, { error: 'not found', path });
    if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 405, { error: 'method not allowed' });
    const { user, password } = basicAuth(req);
    const allowed =
      guard && !OPEN.has(path) ? guard(user, password, req.socket.remoteAddress) : Promise.resolve(true);
    allowed
      .then((ok) => {
        if (typeof ok === 'object')
          return json(
            res,
            ok.status,
            { error: ok.status === 429 ? 'too many failed logins: try later' : 'busy: try later' },
            { 'retry-after': String(ok.retryAfterS) },
          );
        if (!ok)
          return json(
            res,
            401,
            { error: 'credentials required (dashboard or admin)' },
            { 'www-authenticate': 'Basic realm="energy-ingest", charset="UTF-8"' },
          );
        return route(req, res);
      })
      .catch((err: unknown) => {
        if (!res.headersSent) json(res, 500, { error: (err as Error).message });
        else res.destroy();
      });
  };
  // HTTPS when a certificate is configured: the WebSocket endpoint becomes WSS with it
  return tls
    ? (createHttpsServer(
        {
          cert: tls.cert,
          key: tls.key,
          minVersion: TLS_MIN_VERSION,
          ciphers: TLS_CIPHERS,
          honorCipherOrder: true,
        },
        handler,
      ) as unknown as Server)
    : createServer(handler);
}
