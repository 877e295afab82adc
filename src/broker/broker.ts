import type { Server as HttpServer } from 'node:http';
import { createServer, type Server as NetServer } from 'node:net';
import { Aedes, type AedesOptions } from 'aedes';
import type { Logger } from 'pino';
import { createWebSocketStream, WebSocketServer } from 'ws';
import { IngestError } from '../errors.js';
import { conformanceHooks } from './conformance.js';
import type { Ingress } from './ingress.js';

export interface BrokerOptions {
  readonly host: string;
  /** contract section 9: without it every client is refused until device credentials exist */
  readonly allowAnonymous: boolean;
  readonly port: number;
  readonly ingress: Ingress;
  readonly log: Logger;
  /** the HTTP server that carries MQTT over WebSocket at /mqtt */
  readonly httpServer: HttpServer;
}

/** Bounds for Aedes's own queues, so no client can grow the broker's memory without limit. */
const AEDES_LIMITS: Partial<AedesOptions> = {
  // outgoing packets queued per client while it is offline or slow
  queueLimit: 1000,
  // inbound QoS 2 awaiting PUBREL, per client
  maxInflightInbound: 1000,
  maxClientsIdLength: 256,
  connectTimeout: 30_000,
};

/**
 * The embedded Aedes broker and its listeners: MQTT 3.1.1 over TCP, and over
 * WebSocket at /mqtt on the HTTP server. Every publish passes the ingress
 * (authorizePublish) before Aedes acknowledges it.
 */
export class Broker {
  private aedes: Aedes | null = null;
  private tcp: NetServer | null = null;
  private wss: WebSocketServer | null = null;
  port = 0;

  constructor(private readonly opts: BrokerOptions) {}

  get connectedClients(): number {
    return this.aedes?.connectedClients ?? 0;
  }

  get aedesInstance(): Aedes {
    if (!this.aedes) throw new Error('broker not started');
    return this.aedes;
  }

  async start(): Promise<void> {
    const { log, ingress } = this.opts;
    const aedes = await Aedes.createBroker({
      ...AEDES_LIMITS,
      // Device credentials plug in here. Until they exist, a broker that does
      // not allow anonymous clients refuses everyone (bad user name or password).
      ...conformanceHooks((_client, _user, _password, done) => {
        if (this.opts.allowAnonymous) return done(null, true);
        done(Object.assign(new Error('no credential source configured'), { returnCode: 4 }) as never, false);
      }),
      authorizePublish: ingress.authorizePublish as AedesOptions['authorizePublish'],
    });
    this.aedes = aedes;
    aedes.on('clientError', (client, err) =>
      log.debug({ clientId: client?.id, err: err.message }, 'client error'),
    );
    aedes.on('connectionError', (client, err) =>
      log.debug({ clientId: client?.id, err: err.message }, 'connection error'),
    );

    this.tcp = createServer((socket) => {
      socket.setNoDelay(true);
      aedes.handle(socket);
    });
    this.port = await listen(this.tcp, this.opts.host, this.opts.port, 'MQTT');

    this.wss = new WebSocketServer({
      server: this.opts.httpServer,
      path: '/mqtt',
      // MQTT-over-WebSocket clients offer "mqtt" (3.1.1) or "mqttv3.1"; answer with what they offered.
      handleProtocols: (protocols) =>
        protocols.has('mqtt') ? 'mqtt' : protocols.has('mqttv3.1') ? 'mqttv3.1' : false,
    });
    this.wss.on('connection', (ws, req) => {
      const stream = createWebSocketStream(ws);
      stream.on('error', () => stream.destroy());
      aedes.handle(stream, req);
    });
    log.info({ host: this.opts.host, port: this.port }, 'MQTT listener up');
  }

  /** Stop accepting new connections; existing clients stay until close(). */
  async stopListening(): Promise<void> {
    const tcp = this.tcp;
    if (tcp?.listening) await new Promise<void>((resolve) => tcp.close(() => resolve()));
    const wss = this.wss;
    if (wss) await new Promise<void>((resolve) => wss.close(() => resolve()));
  }

  async close(): Promise<void> {
    await this.stopListening();
    const aedes = this.aedes;
    if (aedes) await new Promise<void>((resolve) => aedes.close(() => resolve()));
    this.aedes = null;
  }
}

export function listen(
  server: NetServer | HttpServer,
  host: string,
  port: number,
  what: string,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      reject(
        new IngestError(
          'EI_LISTEN_FAILED',
          `${what} listener cannot bind ${host}:${port}: ${err.code ?? err.message}`,
          { cause: err },
        ),
      );
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      const addr = server.address();
      resolve(typeof addr === 'object' && addr ? addr.port : port);
    });
  });
}
