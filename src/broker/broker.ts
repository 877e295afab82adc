import type { Server as HttpServer, IncomingMessage } from 'node:http';
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createTlsServer, TLSSocket, type Server as TlsServer } from 'node:tls';
import { Aedes, type AedesOptions, type Client } from 'aedes';
import type { Logger } from 'pino';
import { createWebSocketStream, WebSocketServer } from 'ws';
import type { Config } from '../config/types.js';
import { listen } from '../listen.js';
import type { RateLimitedLog } from '../log.js';
import type { DeviceRow } from '../metadata/snapshot.js';
import type { Metrics } from '../metrics.js';
import { TLS_CIPHERS, TLS_MIN_VERSION } from '../tlsCiphers.js';
import { canPublish, canRead, canSubscribe, type Principal } from './acl.js';
import { clientAddress, normalizeAddress } from './address.js';
import type { Authenticator } from './auth.js';
import { connectHooks, keepReorderedDeliveries } from './conformance.js';
import type { InboundPublish, Ingress } from './ingress.js';
import type { Limits, SocketBudget } from './limits.js';
import { LiveRights, type LiveRightsOptions } from './liveRights.js';
import { BoundedPersistence } from './persistence.js';
import { principalKey, SessionOwners } from './sessions.js';
import { boundOutgoingQueue } from './slowConsumers.js';
import { HandshakeGate } from './tlsHandshakes.js';
import { createTopicEmitter } from './topicEmitter.js';

/** Memory bounds of the broker's queues and stores (issue 11): the config keys of these names under mqtt. */
export type BrokerBounds = Pick<
  Config['mqtt'],
  | 'maxQueuedBytesPerClient'
  | 'maxOfflineMessagesPerSession'
  | 'maxOfflineBytesPerSession'
  | 'sessionExpirySeconds'
  | 'maxIdleSessions'
  | 'maxPersistentSessions'
  | 'maxRetainedMessages'
  | 'maxRetainedBytes'
  | 'maxRetainedPayloadBytes'
  // also the largest retained payload on sensors/
  | 'maxPayloadBytes'
  | 'sensorsMayRetain'
  | 'maxPendingWebSocketConnections'
>;

export interface BrokerOptions {
  readonly host: string;
  readonly authenticator: Authenticator;
  readonly metrics: Metrics;
  readonly refusals: RateLimitedLog;
  readonly port: number;
  readonly ingress: Ingress;
  readonly log: Logger;
  /** the HTTP server that carries MQTT over WebSocket at /mqtt */
  readonly httpServer: HttpServer;
  /** MQTT over TLS, when configured (PEM contents, not paths) */
  readonly limits: Limits;
  readonly maxTopicLevels: number;
  /** larger MQTT packets close the connection (payloads above mqtt.maxPayloadBytes but below this are dead-lettered) */
  readonly maxPacketBytes: number;
  readonly connectTimeoutMs: number;
  readonly bounds: BrokerBounds;
  /** open MQTT sockets (TCP + TLS) at most; more are closed on accept (the fd cap, limits.ts) */
  readonly socketBudget?: SocketBudget;
  readonly tls?: {
    readonly port: number;
    readonly cert: Buffer;
    readonly key: Buffer;
    readonly ca?: Buffer;
    /** handshakes in progress at most, all addresses and per address (tlsHandshakes.ts) */
    readonly maxPendingHandshakes: number;
    readonly maxPendingHandshakesPerIp: number;
  };
  /** re-checks of connected logins (liveRights.ts): users rows, Redis sessions, how often */
  readonly liveRights?: Pick<LiveRightsOptions, 'lookupUsers' | 'lookupSession' | 'recheckIntervalMs'>;
  /** Host and Origin check of a WebSocket upgrade (src/http/origin.ts): browsers of other origins are refused */
  readonly verifyUpgrade?: (
    req: IncomingMessage,
  ) => { ok: true } | { ok: false; status: number; detail: string };
}

/** Bounds for Aedes's own queues, so no client can grow the broker's memory without limit. */
const AEDES_LIMITS: Partial<AedesOptions> = {
  // outgoing packets queued per client while it is offline or slow
  queueLimit: 1000,
  // inbound QoS 2 awaiting PUBREL, per client
  maxInflightInbound: 1000,
  maxClientsIdLength: 256,
};

/**
 * The embedded Aedes broker and its listeners: MQTT 3.1.1 over TCP, and over
 * WebSocket at /mqtt on the HTTP server. Every publish passes the ingress
 * (authorizePublish) before Aedes acknowledges it.
 */
export class Broker {
  private aedes: Aedes | null = null;
  /** Aedes's message emitter, which finishes messages no subscription can match without a trie walk */
  private readonly emitter = createTopicEmitter();
  private guardWarned = false;
  private reorderWarned = false;
  private tlsServer: TlsServer | null = null;
  private handshakes: HandshakeGate | null = null;
  tlsPort = 0;
  /** each client's current rights: set at CONNECT, replaced by liveRights when its rows change */
  private readonly principals = new WeakMap<Client, Principal>();
  private live: LiveRights | null = null;
  /** client id → the login that holds it (issue 12.2) */
  private readonly owners = new SessionOwners<Client>();
  /** clients whose connection has ended (authentication may still be running for them) */
  private readonly gone = new WeakSet<Client>();
  private tcp: NetServer | null = null;
  private wss: WebSocketServer | null = null;
  private store: BoundedPersistence | null = null;
  /** persistent sessions whose client is gone → since when (for mqtt.sessionExpirySeconds) */
  private readonly idleSessions = new Map<string, number>();
  /** persistent sessions whose first subscription was approved but is not stored yet */
  private readonly reservedSessions = new Set<string>();
  private sessionCheck: Promise<unknown> = Promise.resolve();
  private expiryTimer: NodeJS.Timeout | null = null;
  /** WebSocket clients that have not been sent a CONNACK yet */
  private readonly pendingWs = new Set<Client>();
  private queueGuardWarned = false;
  port = 0;

  constructor(private readonly opts: BrokerOptions) {}

  get connectedClients(): number {
    return this.aedes?.connectedClients ?? 0;
  }

  /** published messages no subscription could match (finished without the topic trie walk) */
  get unmatchedPublishes(): number {
    return this.emitter.skipped;
  }

  get aedesInstance(): Aedes {
    if (!this.aedes) throw new Error('broker not started');
    return this.aedes;
  }

  /**
   * The embedded broker: Aedes with bounded persistence and our hooks, then
   * its listeners (TCP, TLS, WebSocket on the HTTP server).
   */
  async start(): Promise<void> {
    const store = this.createStore();
    const aedes = await Aedes.createBroker(this.aedesOptions(store));
    this.aedes = aedes;
    this.startLiveRights(store);
    this.watchSessions(aedes);
    await this.listenTcp(aedes);
    await this.listenTls(aedes);
    this.listenWebSocket(aedes);
    this.opts.log.info({ host: this.opts.host, port: this.port }, 'MQTT listener up');
  }

  /** Aedes's in-memory store, bounded (persistence.ts), and its gauges */
  private createStore(): BoundedPersistence {
    const { metrics, bounds } = this.opts;
    const store = new BoundedPersistence({
      maxMessagesPerSession: bounds.maxOfflineMessagesPerSession,
      maxBytesPerSession: bounds.maxOfflineBytesPerSession,
      maxRetainedMessages: bounds.maxRetainedMessages,
      maxRetainedBytes: bounds.maxRetainedBytes,
      maxRetainedPayloadBytes: bounds.maxRetainedPayloadBytes,
      maxSensorPayloadBytes: bounds.maxPayloadBytes,
      onOfflineDropped: (n) => metrics.offlineDropped.inc(undefined, n),
      onRetainedRefused: (reason, topic) => {
        metrics.retainedRefused.inc({ reason });
        this.opts.refusals.warn(
          `retain:${reason}`,
          { topic: topic.slice(0, 200), reason },
          'retained message not stored (still delivered)',
        );
      },
    });
    this.store = store;
    metrics.gauge('energy_ingest_retained_messages', 'retained messages stored (alerts excluded)', () =>
      this.store ? this.store.retainedMessages : 0,
    );
    metrics.gauge(
      'energy_ingest_retained_bytes',
      'bytes of retained messages stored (alerts excluded)',
      () => (this.store ? this.store.retainedBytes : 0),
    );
    metrics.gauge('energy_ingest_session_queued_messages', 'messages queued for persistent sessions', () =>
      this.store ? this.store.queuedMessages : 0,
    );
    return store;
  }

  /** Aedes's options: limits, the bounded store and every hook (logins, admission, ACLs, the ingress) */
  private aedesOptions(store: BoundedPersistence): Partial<AedesOptions> {
    return {
      ...AEDES_LIMITS,
      mq: this.emitter,
      persistence: store.persistence,
      maxTopicLevels: this.opts.maxTopicLevels,
      connectTimeout: this.opts.connectTimeoutMs,
      ...connectHooks(
        (client, username, password, done) => {
          const address = clientAddress(client);
          this.opts.authenticator
            .authenticate(client.id, username, password, certificateName(client), address)
            .then(
              (r) => {
                if (!r.ok) {
                  done(Object.assign(new Error(r.reason), { returnCode: r.returnCode }) as never, false);
                  return;
                }
                // the device's row as of the newest snapshot: one may have landed while the password was checked
                const who = this.live ? this.live.current(r.login, r.principal) : r.principal;
                if (!who) {
                  this.refuse('rights_changed', client.id, r.principal, 'device changed during login', '');
                  done(Object.assign(new Error('rights_changed'), { returnCode: 5 }) as never, false);
                } else if (!this.bind(client, who)) {
                  done(Object.assign(new Error('client_id_taken'), { returnCode: 2 }) as never, false);
                } else {
                  this.principals.set(client, who);
                  this.live?.admitted(client, r.login);
                  done(null, true);
                }
              },
              (err: unknown) => done(Object.assign(err as Error, { returnCode: 3 }) as never, false),
            );
        },
        (client, packet) => {
          // Aedes counts a client once it is registered, after authentication: a burst of CONNECTs
          // would all see the same count, so the admitted ones still authenticating count too
          // ...and so do TLS handshakes in progress (a TLS client's address was charged at its accept)
          const r = this.opts.limits.admit(
            client,
            packet,
            (this.aedes?.connectedClients ?? 0) + this.admitting + (this.handshakes?.size ?? 0),
            (client as unknown as { conn?: unknown }).conn instanceof TLSSocket,
          );
          if (r) this.refuse(r.reason, client.id ?? packet.clientId, undefined, r.reason, '');
          else this.holdAdmission(client);
          return r;
        },
      ),
      authorizePublish: this.authorizePublish,
      authorizeForward: this.authorizeForward,
      authorizeSubscribe: this.authorizeSubscribe,
    };
  }

  private readonly authorizePublish: AedesOptions['authorizePublish'] = (client, packet, callback) => {
    const { ingress, metrics, bounds } = this.opts;
    // client null: the broker itself (the daemon's alerts, $SYS)
    const who = client ? this.principals.get(client) : undefined;
    if (client) {
      const verdict = who
        ? canPublish(who, packet.topic)
        : { ok: false as const, reason: 'not authenticated' };
      if (!verdict.ok) {
        this.refuse('publish_denied', client.id, who, verdict.reason, packet.topic);
        // MQTT 3.1.1 has no negative PUBACK: closing is the only refusal a client notices
        callback(new Error(verdict.reason));
        return;
      }
      // Sensors report readings; a retained reading per topic is state nobody
      // asked for (and memory an attacker with one sensor's password could fill).
      if (packet.retain && who?.role === 'sensor' && !bounds.sensorsMayRetain) {
        packet.retain = false;
        metrics.retainedRefused.inc({ reason: 'sensor' });
      }
    }
    const wait = client ? this.opts.limits.throttleMs(client) : 0;
    if (wait > 0) {
      this.opts.metrics.throttled.inc();
      setTimeout(() => ingress.authorizePublish(client, packet as unknown as InboundPublish, callback), wait);
      return;
    }
    ingress.authorizePublish(client, packet as unknown as InboundPublish, callback);
  };

  // Every delivery, live or queued for a persistent session, is checked
  // against the receiver's rights: a restored session's subscriptions are
  // not authorized again (Aedes skips authorizeSubscribe on restore), and
  // a login's role may have changed since it subscribed.
  private readonly authorizeForward: AedesOptions['authorizeForward'] = (client, packet) => {
    const who = this.principals.get(client);
    if (who && canRead(who, packet.topic)) return packet;
    this.refuse('forward_denied', client.id, who, 'message not delivered: not readable', packet.topic);
    return null;
  };

  private readonly authorizeSubscribe: AedesOptions['authorizeSubscribe'] = (client, sub, callback) => {
    const { bounds } = this.opts;
    const store = this.store!;
    const who = this.principals.get(client);
    const verdict = who ? canSubscribe(who, sub.topic) : { ok: false as const, reason: 'not authenticated' };
    if (!verdict.ok) {
      this.refuse('subscribe_denied', client.id, who, verdict.reason, sub.topic);
      callback(null, null); // SUBACK 0x80 for this filter
      return;
    }
    if (!this.opts.limits.subscribe(client, sub.topic)) {
      this.refuse('too_many_subscriptions', client.id, who, 'too many subscriptions', sub.topic);
      callback(null, null);
      return;
    }
    if (client.clean) {
      callback(null, sub);
      return;
    }
    // A persistent session's subscriptions make the broker queue for it while
    // it is away: their number is capped (each queue is, by the offline budget).
    // The check awaits the store, and Aedes stores the subscriptions only after this answer:
    // checks run one at a time, and sessions approved but not stored yet are reserved and
    // count against the cap, so SUBSCRIBEs of many sessions at one moment cannot all pass
    // (a reservation ends on the 'subscribe' event, i.e. once stored, or when the client goes).
    if (this.reservedSessions.has(client.id)) {
      callback(null, sub);
      return;
    }
    const check = this.sessionCheck.then(async () => {
      const room = await store.roomForSession(client.id, bounds.maxPersistentSessions, this.reservedSessions);
      if (room) this.reservedSessions.add(client.id);
      return room;
    });
    this.sessionCheck = check.catch(() => false);
    check.then(
      (room) => {
        if (room) return callback(null, sub);
        this.refuse('too_many_sessions', client.id, who, 'too many persistent sessions', sub.topic);
        callback(null, null);
      },
      () => callback(null, null),
    );
  };

  /** re-checks of connected logins when rights change (liveRights.ts) */
  private startLiveRights(store: BoundedPersistence): void {
    const { metrics, log } = this.opts;
    const persistence = store.persistence as unknown as {
      removeSubscriptions(client: Client, subs: string[]): Promise<unknown>;
    };
    this.live = new LiveRights({
      principal: (c) => this.principals.get(c),
      setPrincipal: (c, who) => this.principals.set(c, who),
      removeStoredSubscriptions: (c, subs) => persistence.removeSubscriptions(c, subs),
      recheckIntervalMs: 30_000,
      ...this.opts.liveRights,
      metrics,
      log,
      refusals: this.opts.refusals,
    });
    this.live.start();
    metrics.gauge('energy_ingest_live_logins', 'connected logins whose rights are re-checked', () =>
      this.live ? this.live.size : 0,
    );
  }

  /** persistent sessions: idle ones capped and expired (mqtt.maxIdleSessions, mqtt.sessionExpirySeconds) */
  private watchSessions(aedes: Aedes): void {
    const { log, bounds } = this.opts;
    aedes.on('clientError', (client, err) =>
      log.debug({ clientId: client?.id, err: err.message }, 'client error'),
    );
    aedes.on('connectionError', (client, err) =>
      log.debug({ clientId: client?.id, err: err.message }, 'connection error'),
    );
    aedes.on('connackSent', (_packet, client) => this.pendingWs.delete(client));
    aedes.on('client', (client) => this.idleSessions.delete(client.id));
    aedes.on('subscribe', (_subs, client) => this.reservedSessions.delete(client.id));
    const maxIdle = bounds.maxIdleSessions;
    aedes.on('clientDisconnect', (client) => {
      this.reservedSessions.delete(client.id);
      if (client.clean) return;
      this.idleSessions.delete(client.id); // re-inserted: the Map's order is the order of leaving
      this.idleSessions.set(client.id, Date.now());
      // A login looping CONNECT (clean session 0, a fresh id each time) / DISCONNECT must not grow
      // this map (nor the sessions' QoS 2 state) for a day: beyond the cap the longest idle ends now.
      if (this.idleSessions.size > maxIdle) {
        const oldest = this.idleSessions.keys().next().value!;
        this.idleSessions.delete(oldest);
        this.expireSession(oldest);
      }
    });
    const expiryMs = bounds.sessionExpirySeconds * 1000;
    this.expiryTimer = setInterval(() => this.expireSessions(expiryMs), Math.min(60_000, expiryMs / 2));
    this.expiryTimer.unref();
  }

  private async listenTcp(aedes: Aedes): Promise<void> {
    this.tcp = createServer((socket) => {
      if (!this.admitSocket(socket)) return;
      socket.setNoDelay(true);
      this.adopt(aedes.handle(socket), socket);
    });
    this.port = await listen(this.tcp, this.opts.host, this.opts.port, 'MQTT');
    this.tcp.on('error', (err) => this.listenerError('MQTT', err));
  }

  private async listenTls(aedes: Aedes): Promise<void> {
    const { metrics, log } = this.opts;
    const tlsOpts = this.opts.tls;
    if (tlsOpts) {
      // With a CA, clients may present a certificate; its CN can name a device
      // (checked at authenticate). Unverified certificates are not refused here
      // so that password logins over TLS keep working: they just name nobody.
      const handshakes = this.tlsHandshakeGate(tlsOpts);
      this.handshakes = handshakes;
      metrics.gauge(
        'energy_ingest_tls_handshakes_pending',
        'TLS handshakes in progress',
        () => handshakes.size,
      );
      this.tlsServer = createTlsServer(
        {
          cert: tlsOpts.cert,
          key: tlsOpts.key,
          ca: tlsOpts.ca,
          requestCert: tlsOpts.ca !== undefined,
          rejectUnauthorized: false,
          minVersion: TLS_MIN_VERSION,
          ciphers: TLS_CIPHERS,
          honorCipherOrder: true,
          // Node's default is 120 s; this is an idle timer, the gate's deadline from the accept is the hard one
          handshakeTimeout: this.opts.connectTimeoutMs,
        },
        (socket) => {
          handshakes.secured(socket);
          socket.setNoDelay(true);
          this.adopt(aedes.handle(socket), socket);
        },
      );
      this.tlsServer.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
        if (err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT') handshakes.nodeTimedOut(socket);
        log.debug({ err: err.message }, 'TLS handshake failed');
      });
      // counted from the raw TCP accept, before the handshake spends anything on it
      this.tlsServer.on('connection', (raw: Socket) => {
        if (this.admitSocket(raw) && handshakes.accept(raw)) raw.destroy();
      });
      this.tlsPort = await listen(this.tlsServer, this.opts.host, tlsOpts.port, 'MQTT/TLS');
      this.tlsServer.on('error', (err) => this.listenerError('MQTT/TLS', err));
      log.info({ host: this.opts.host, port: this.tlsPort }, 'MQTT/TLS listener up');
    }
  }

  private listenWebSocket(aedes: Aedes): void {
    const { metrics, bounds } = this.opts;
    this.wss = new WebSocketServer({
      server: this.opts.httpServer,
      path: '/mqtt',
      // ws buffers a whole message before MQTT sees a byte of it: no message may exceed one MQTT packet
      maxPayload: this.opts.maxPacketBytes,
      // MQTT-over-WebSocket clients offer "mqtt" (3.1.1) or "mqttv3.1"; answer with what they offered.
      handleProtocols: (protocols) =>
        protocols.has('mqtt') ? 'mqtt' : protocols.has('mqttv3.1') ? 'mqttv3.1' : false,
      // Before the handshake, so a refused upgrade never gets a socket:
      // 1. a browser page of another origin, or a rebound Host (403 / 421, src/http/origin.ts);
      // 2. connections that have not completed CONNECT cost memory and belong to
      //    nobody yet: beyond the cap the upgrade is answered 503.
      verifyClient: (info, cb) => {
        const v = this.opts.verifyUpgrade?.(info.req);
        // the refusal names the offending header: plain text, never HTML
        if (v && !v.ok) {
          cb(false, v.status, v.detail, {
            'Content-Type': 'text/plain; charset=utf-8',
            'X-Content-Type-Options': 'nosniff',
          });
          return;
        }
        if (this.pendingWs.size < bounds.maxPendingWebSocketConnections) return cb(true);
        metrics.webSocketRefused.inc();
        this.opts.refusals.warn(
          'ws:pending',
          { pending: this.pendingWs.size },
          'WebSocket upgrade refused: too many connections without CONNACK',
        );
        cb(false, 503, 'Too many pending connections');
      },
    });
    // ws re-emits the HTTP server's errors (an accept failing with EMFILE); an
    // 'error' without a listener would end the process. Counted and logged by
    // the composition root's own listener on the HTTP server.
    this.wss.on('error', () => {});
    this.wss.on('connection', (ws, req) => {
      const stream = createWebSocketStream(ws);
      stream.on('error', () => stream.destroy());
      const client = aedes.handle(stream, req);
      this.pendingWs.add(client);
      ws.once('close', () => this.pendingWs.delete(client));
      this.adopt(client, stream);
    });
  }

  /**
   * TLS handshakes in progress (issue 18 item 5): bounded in number, per
   * address and in time, counted against the connection cap and the
   * per-address connect rate; every refusal counted and logged with its address.
   */
  private tlsHandshakeGate(t: NonNullable<BrokerOptions['tls']>): HandshakeGate {
    const { metrics, refusals, limits, connectTimeoutMs } = this.opts;
    // never more than half the connection cap: a flood of handshakes leaves room for MQTT clients
    const maxPending = Math.min(t.maxPendingHandshakes, Math.max(1, Math.floor(limits.maxConnections / 2)));
    const gate: HandshakeGate = new HandshakeGate({
      maxPending,
      maxPendingPerAddress: t.maxPendingHandshakesPerIp,
      timeoutMs: connectTimeoutMs,
      maxConnections: limits.maxConnections,
      connections: () => (this.aedes?.connectedClients ?? 0) + this.admitting,
      chargeConnect: (address) => limits.chargeConnect(address),
      onRefused: (reason, address) => {
        metrics.tlsHandshakesRefused.inc({ reason });
        refusals.warn(
          `tls:${reason}`,
          { address, reason, pending: gate.size, maxPending },
          `TLS handshake refused at accept: ${reason}`,
        );
      },
      onTimeout: (address) => {
        metrics.tlsHandshakesRefused.inc({ reason: 'timeout' });
        refusals.warn(
          'tls:timeout',
          { address, reason: 'timeout', timeoutMs: connectTimeoutMs },
          'TLS handshake not completed within mqtt.connectTimeoutMs: closed',
        );
      },
    });
    return gate;
  }

  /**
   * The socket budget (limits.ts): false when the socket was closed at once
   * because too many MQTT sockets are open (each holds a file descriptor).
   */
  private admitSocket(socket: Socket): boolean {
    const budget = this.opts.socketBudget;
    if (!budget) return true;
    if (!budget.take()) {
      const address = normalizeAddress(socket.remoteAddress) ?? null;
      socket.destroy();
      this.opts.metrics.authRefused.inc({ reason: 'too_many_sockets' });
      this.opts.refusals.warn(
        'acl:too_many_sockets',
        { address, reason: 'too_many_sockets' },
        `${budget.max} MQTT sockets open: connection closed at accept`,
      );
      return false;
    }
    socket.once('close', () => budget.release());
    return true;
  }

  /**
   * A listener's error after it is up: accept() failing (EMFILE, ENFILE when
   * descriptors run out; libuv then closes the pending connection). The
   * listener keeps accepting; without this handler the error would end the process.
   */
  private listenerError(what: string, err: NodeJS.ErrnoException): void {
    this.opts.metrics.ioErrors.inc({ op: 'accept', code: err.code ?? 'unknown' });
    this.opts.refusals.warn(
      `listener:${what}`,
      { listener: what, code: err.code ?? null },
      `${what} listener: ${err.message}`,
    );
  }

  /**
   * Aedes has no packet size limit: it buffers a packet whole, whatever length
   * its header claims. After each parse of a socket read, the bytes still
   * buffered belong to one unfinished packet; beyond maxPacketBytes the client
   * is cut off. (Relies on Aedes's per-client mqtt-packet parser, pinned with
   * Aedes 1.x; without it the guard stays off and says so once.)
   */
  /** Admitted clients not yet registered by Aedes (see the admission hook). */
  private admitting = 0;

  private holdAdmission(client: Client): void {
    this.admitting++;
    let held = true;
    const release = () => {
      if (!held) return;
      held = false;
      this.admitting--;
    };
    const c = client as unknown as NodeJS.EventEmitter & { conn?: NodeJS.EventEmitter };
    c.once('connected', release);
    c.conn?.once('close', release);
  }

  /** Per-connection fixes, applied before the client can subscribe. */
  private adopt(
    client: Client,
    stream: { destroy(): void; once(event: 'close', f: () => void): void },
  ): void {
    // Aedes ends every connection (disconnect, error, takeover, refusal) by destroying its stream
    stream.once('close', () => this.connectionEnded(client));
    if (!keepReorderedDeliveries(client) && !this.reorderWarned) {
      this.reorderWarned = true;
      this.opts.log.warn(
        'cannot correct Aedes dedupe with this Aedes version: reordered deliveries may be dropped',
      );
    }
    this.guardPacketSize(client, stream);
    const max = this.opts.bounds.maxQueuedBytesPerClient;
    const bounded = boundOutgoingQueue(client, max, (queued) => {
      this.opts.metrics.slowConsumersDisconnected.inc();
      this.opts.refusals.warn(
        'slow_consumer',
        { clientId: client.id, queued, limit: max },
        'client does not read its socket: disconnected (mqtt.maxQueuedBytesPerClient)',
      );
    });
    if (!bounded && !this.queueGuardWarned) {
      this.queueGuardWarned = true;
      this.opts.log.warn('slow consumer guard unavailable with this Aedes version');
    }
  }

  /**
   * Bind the client's id to its login before Aedes registers the client, which
   * is where Aedes would close the id's current holder and clean or resume its
   * session. False: refuse the CONNECT (0x02), the id is another login's.
   */
  private bind(client: Client, who: Principal): boolean {
    // gone while its password was checked: Aedes drops it; binding its id would leak
    if (this.gone.has(client)) return false;
    if (this.owners.claim(client.id, principalKey(who), client, !client.clean)) return true;
    this.refuse('client_id_taken', client.id, who, 'client id held by another login: CONNACK 0x02', '');
    return false;
  }

  /**
   * A connection ended: a clean session's id is free again; a persistent
   * session's stays bound while the session holds subscriptions or queued
   * messages (until it expires), so the map never outgrows the sessions.
   */
  private connectionEnded(client: Client): void {
    this.gone.add(client);
    this.live?.ended(client);
    const id = (client as { id?: string | null }).id;
    if (!id || !this.owners.release(id, client)) return;
    const store = this.store;
    if (!store) return;
    store.holdsSession(id).then(
      (holds) => {
        if (!holds) this.owners.forget(id);
      },
      () => undefined,
    );
  }

  /** Forget persistent sessions disconnected longer than mqtt.sessionExpirySeconds. */
  private expireSessions(expiryMs: number): void {
    const store = this.store;
    const aedes = this.aedes;
    if (!store || !aedes) return;
    const now = Date.now();
    for (const [id, since] of this.idleSessions) {
      if (now - since < expiryMs) continue;
      this.idleSessions.delete(id);
      this.expireSession(id);
    }
  }

  private expireSession(id: string): void {
    const store = this.store;
    const aedes = this.aedes;
    if (!store || !aedes) return;
    if ((aedes as unknown as { clients: Record<string, Client> }).clients[id]) return; // back meanwhile
    store.expire(id).then(
      () => {
        this.owners.forget(id);
        this.opts.metrics.sessionsExpired.inc();
      },
      (err: unknown) => this.opts.log.warn({ clientId: id, err: String(err) }, 'session expiry failed'),
    );
  }

  private guardPacketSize(client: Client, stream: { destroy(): void }): void {
    const parser = (
      client as unknown as { _parser?: { parse?: (b: Buffer) => number; _list?: { length: number } } }
    )._parser;
    if (!parser?.parse || !parser._list) {
      if (!this.guardWarned) this.opts.log.warn('MQTT packet size guard unavailable with this Aedes version');
      this.guardWarned = true;
      return;
    }
    const parse = parser.parse.bind(parser);
    const max = this.opts.maxPacketBytes;
    let cut = false;
    const cutOff = () => {
      cut = true;
      this.refuse('packet_too_large', client.id, this.principals.get(client), `packet over ${max} bytes`, '');
      stream.destroy();
    };
    // A packet that arrives whole in one socket read (up to 64 KiB on loopback)
    // never shows as unfinished: its announced length is checked too, before
    // its body is read (a 60 KB CONNECT under a 16 KiB limit was accepted).
    const p = parser as unknown as { _parseLength?: () => boolean; packet?: { length: number } };
    const parseLength = p._parseLength?.bind(parser);
    if (parseLength) {
      p._parseLength = () => {
        if (!parseLength()) return false;
        if ((p.packet?.length ?? 0) <= max) return true;
        cutOff();
        return false; // stops the parser: the packet is never handled
      };
    }
    parser.parse = (buf: Buffer) => {
      if (cut) return 0;
      const left = parse(buf);
      if (!cut && parser._list!.length > max) cutOff();
      return left;
    };
  }

  private refuse(
    reason: string,
    clientId: string,
    who: Principal | undefined,
    detail: string,
    topic: string,
  ): void {
    this.opts.metrics.authRefused.inc({ reason });
    this.opts.refusals.warn(
      `acl:${reason}`,
      { clientId, username: who?.username ?? null, topic: topic.slice(0, 200), reason },
      detail,
    );
  }

  /**
   * A new metadata snapshot (called on every load): connected device logins
   * follow their rows (disabled or removed: disconnected; role or building
   * changed: new rights at once), users and session logins are re-checked.
   * Returns how many clients were disconnected at once.
   */
  enforceDevices(devices: readonly DeviceRow[]): number {
    return this.live?.onSnapshot(devices) ?? 0;
  }

  /**
   * Stop accepting new connections. Resolves once the listeners are closed,
   * which (for net servers) is when every existing connection has ended: so
   * only await it after the clients have been closed.
   */
  private stopListening(): Promise<void> {
    const tcp = this.tcp;
    const wss = this.wss;
    const tlsServer = this.tlsServer;
    return Promise.all([
      tcp?.listening ? new Promise<void>((resolve) => tcp.close(() => resolve())) : undefined,
      tlsServer?.listening ? new Promise<void>((resolve) => tlsServer.close(() => resolve())) : undefined,
      wss ? new Promise<void>((resolve) => wss.close(() => resolve())) : undefined,
    ]).then(() => undefined);
  }

  /** No new connections, then every client closed (stop order of the composition root). */
  async close(): Promise<void> {
    if (this.expiryTimer) clearInterval(this.expiryTimer);
    this.expiryTimer = null;
    this.live?.stop();
    const listenersClosed = this.stopListening();
    const aedes = this.aedes;
    if (aedes) await new Promise<void>((resolve) => aedes.close(() => resolve()));
    this.aedes = null;
    await listenersClosed;
  }
}

/** The CN of a client certificate the configured CA vouched for, if the client came over TLS with one. */
function certificateName(client: Client): string | undefined {
  const conn = (client as unknown as { conn?: unknown }).conn;
  if (!(conn instanceof TLSSocket) || !conn.authorized) return undefined;
  const cn = conn.getPeerCertificate()?.subject?.CN;
  return typeof cn === 'string' && cn ? cn : undefined;
}
