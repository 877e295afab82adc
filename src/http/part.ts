import type { Server } from 'node:http';
import type { Component, NodeContext } from '../component.js';
import { readPem } from '../config/pem.js';
import { listen } from '../listen.js';
import { BrowserGuard } from './origin.js';
import { type RouteDeps, routes } from './routes.js';
import { createHttpServer, type Guard } from './server.js';

/** Who may log in to /api/* (the broker's authenticator: the same credential sources as MQTT). */
export type HttpLogin = (
  user: string,
  password: string,
  address: string | undefined,
) => Promise<{ ok: boolean; role?: string; refusedFor?: 'login_rate' | 'login_busy'; retryAfterS?: number }>;

/** The HTTP listener (contract section 10): probes, metrics, the API, the status page and MQTT over WebSocket. */
export class HttpPart implements Component {
  readonly name = 'http';
  server!: Server;
  browsers!: BrowserGuard;
  port = 0;

  constructor(
    private readonly ctx: NodeContext,
    private readonly deps: Omit<RouteDeps, 'metrics'>,
    private readonly login: HttpLogin,
  ) {}

  async start(): Promise<void> {
    const { cfg, log, metrics } = this.ctx;
    const { cert, key } = cfg.http.tls;
    const tls =
      cert && key ? { cert: readPem('http.tls.cert', cert), key: readPem('http.tls.key', key) } : undefined;
    // Host and Origin checks against pages of other origins and DNS rebinding (src/http/origin.ts)
    this.browsers = new BrowserGuard(
      {
        bindHost: cfg.http.host,
        allowedHosts: cfg.http.allowedHosts,
        allowedOrigins: cfg.http.allowedOrigins,
        tls: tls !== undefined,
      },
      metrics,
      log,
    );
    this.server = createHttpServer(routes({ metrics, ...this.deps }), this.guard(), tls, this.browsers);
    this.port = await listen(this.server, cfg.http.host, cfg.http.port, 'HTTP');
    // accept() failing (EMFILE when descriptors run out) must not end the process
    this.server.on('error', (err) => this.ctx.ioError('accept', err));
  }

  /**
   * Whenever anonymous MQTT is not allowed, /api/* needs HTTP Basic credentials
   * of a dashboard or admin (the same sources as MQTT logins).
   */
  private guard(): Guard | undefined {
    if (this.ctx.cfg.auth.allowAnonymous) return undefined;
    return async (user, password, address) => {
      if (!user) return false;
      const r = await this.login(user, password ?? '', address);
      if (r.refusedFor)
        return { status: r.refusedFor === 'login_rate' ? 429 : 503, retryAfterS: r.retryAfterS ?? 1 };
      return r.ok && (r.role === 'dashboard' || r.role === 'admin');
    };
  }

  async stop(): Promise<void> {
    const server = this.server;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
