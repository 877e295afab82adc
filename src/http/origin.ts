import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import { RateLimitedLog } from '../log.js';
import type { Metrics } from '../metrics.js';

// Browsers are attackers too. In the default anonymous loopback mode any page
// the operator opens can reach 127.0.0.1: a page of another origin could open
// the MQTT WebSocket as the anonymous admin (browsers do not apply the
// same-origin policy to WebSockets; they only send Origin), and a DNS-rebound
// name (rebind.attacker.example → 127.0.0.1) makes the HTTP API same-origin
// with the attacker's page. Two checks close both:
//   - Host: HTTP is answered only for the daemon's own names (http.allowedHosts);
//   - Origin: a WebSocket upgrade that carries an Origin (every browser sends
//     one) must come from the daemon's own origin or http.allowedOrigins.
// Clients without an Origin (MQTT.js in Node, mosquitto, ...) are not browsers
// and pass: the MQTT login is their gate.

/** Host names the default policy serves when the daemon listens on loopback. */
const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '[::1]'];
/** wildcard bind addresses: the daemon answers for whatever name reaches it */
const WILDCARD_BINDS = new Set(['0.0.0.0', '::', '[::]']);

export type Verdict =
  | { ok: true }
  | { ok: false; status: 403 | 421; reason: 'host' | 'origin'; detail: string };

/** The host name of a Host header or an allowedHosts entry (lowercase, IPv6 bracketed, port dropped). */
export function hostName(value: string): string | undefined {
  const v = value.trim();
  if (!v || /[/\\@?#\s]/.test(v)) return undefined;
  // a bare IPv6 address (::1) as configured: bracket it as a Host header would
  const bracketed = v.includes(':') && v.split(':').length > 2 && !v.startsWith('[') ? `[${v}]` : v;
  try {
    return new URL(`http://${bracketed}`).hostname.replace(/\.$/, '') || undefined;
  } catch {
    return undefined;
  }
}

/** An allowedOrigins entry as a browser sends it (scheme://host[:port], default port dropped), or undefined. */
export function originOf(value: string): string | undefined {
  try {
    const u = new URL(value.trim());
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return undefined;
    if (u.username || u.password || (u.pathname !== '/' && u.pathname !== '') || u.search || u.hash)
      return undefined;
    return u.origin;
  } catch {
    return undefined;
  }
}

/** Problems of configured lists, for the configuration report (one line each). */
export function originConfigProblems(hosts?: readonly string[], origins?: readonly string[]): string[] {
  const out: string[] = [];
  for (const h of hosts ?? []) {
    const name = h.startsWith('*.') ? hostName(h.slice(2)) : h === '*' ? '*' : hostName(h);
    if (!name) out.push(`http.allowedHosts: "${h}" is not a host name (name, address, "*" or "*.domain")`);
  }
  for (const o of origins ?? [])
    if (o !== '*' && !originOf(o))
      out.push(
        `http.allowedOrigins: "${o}" is not an origin such as https://dashboard.example:8443 (or "*")`,
      );
  return out;
}

export interface BrowserGuardOptions {
  /** http.host: the bind address */
  readonly bindHost: string;
  readonly allowedHosts?: readonly string[];
  readonly allowedOrigins?: readonly string[];
  /** HTTPS (and WSS): the daemon's own origin is https://… */
  readonly tls: boolean;
}

/** The Host and Origin policy of the HTTP server and its WebSocket endpoint. */
export class BrowserGuard {
  /** undefined: any host name (wildcard bind without http.allowedHosts, or "*") */
  private readonly hosts: ReadonlySet<string> | undefined;
  private readonly suffixes: readonly string[];
  private readonly origins: ReadonlySet<string>;
  private readonly anyOrigin: boolean;
  private readonly scheme: 'http' | 'https';
  private readonly refusals: RateLimitedLog;

  constructor(
    opts: BrowserGuardOptions,
    private readonly metrics: Metrics,
    log: Logger,
  ) {
    this.scheme = opts.tls ? 'https' : 'http';
    const configured = opts.allowedHosts;
    if (configured ? configured.includes('*') : WILDCARD_BINDS.has(opts.bindHost)) {
      this.hosts = undefined;
      this.suffixes = [];
    } else {
      const names = configured ?? [...LOOPBACK_NAMES, opts.bindHost];
      this.hosts = new Set(names.filter((n) => !n.startsWith('*.')).flatMap((n) => hostName(n) ?? []));
      this.suffixes = names.filter((n) => n.startsWith('*.')).flatMap((n) => hostName(n.slice(2)) ?? []);
    }
    this.anyOrigin = opts.allowedOrigins?.includes('*') ?? false;
    this.origins = new Set((opts.allowedOrigins ?? []).flatMap((o) => originOf(o) ?? []));
    this.refusals = new RateLimitedLog(log);
  }

  /** Is this Host header one of the daemon's names? (No Host at all is no browser: HTTP/1.0 tools.) */
  hostAllowed(host: string | undefined): boolean {
    if (host === undefined || this.hosts === undefined) return true;
    const name = hostName(host);
    if (!name) return false;
    return this.hosts.has(name) || this.suffixes.some((s) => name === s || name.endsWith(`.${s}`));
  }

  /** Origin check for a WebSocket upgrade: none (not a browser), the page's own origin, or a configured one. */
  originAllowed(origin: string | undefined, host: string | undefined): boolean {
    if (origin === undefined || this.anyOrigin) return true;
    // "null" (file://, sandboxed frames, data: URLs) is nobody's origin
    const o = originOf(origin);
    if (!o) return false;
    if (this.origins.has(o)) return true;
    // the daemon's own origin: the one the browser reached it by, as its Host header names it
    if (!host) return false;
    try {
      return new URL(`${this.scheme}://${host}`).origin === o;
    } catch {
      return false;
    }
  }

  /** The verdict for a plain HTTP request. */
  request(req: IncomingMessage): Verdict {
    return this.hostAllowed(req.headers.host) ? { ok: true } : this.refuse(req, 'host');
  }

  /** The verdict for a WebSocket upgrade: Host first, then Origin. */
  upgrade(req: IncomingMessage): Verdict {
    if (!this.hostAllowed(req.headers.host)) return this.refuse(req, 'host');
    if (!this.originAllowed(req.headers.origin, req.headers.host)) return this.refuse(req, 'origin');
    return { ok: true };
  }

  private refuse(req: IncomingMessage, reason: 'host' | 'origin'): Verdict {
    this.metrics.httpRefused.inc({ reason });
    const detail =
      reason === 'host'
        ? `host "${String(req.headers.host).slice(0, 100)}" is not served here (http.allowedHosts)`
        : `origin "${String(req.headers.origin).slice(0, 100)}" may not open the WebSocket (http.allowedOrigins)`;
    this.refusals.warn(
      `http:${reason}`,
      {
        remote: req.socket.remoteAddress,
        host: req.headers.host?.slice(0, 100),
        origin: req.headers.origin?.slice(0, 100),
        path: (req.url ?? '').slice(0, 100),
      },
      `refused: ${detail}`,
    );
    return { ok: false, status: reason === 'host' ? 421 : 403, reason, detail };
  }
}
