import type { Aedes } from 'aedes';
import type { Component, NodeContext } from '../component.js';
import { isLoopbackOnly } from '../config/load.js';
import { readPem } from '../config/pem.js';
import type { HttpLogin, HttpPart } from '../http/part.js';
import type { ReadingConsumer } from '../ingest/consumer.js';
import { RateLimitedLog } from '../log.js';
import type { MetadataPart } from '../metadata/part.js';
import { UserLookup } from '../metadata/userLookup.js';
import type { DeadLetterPart, LogPart, PipelinePart } from '../pipeline/parts.js';
import type { RedisPart } from '../redis.js';
import type { SinkPart } from '../sinks/part.js';
import { Admission, HeapGuard } from './admission.js';
import { Authenticator } from './auth.js';
import { Broker } from './broker.js';
import { DerivationSlots, VerifiedCache } from './credentials.js';
import { Ingress } from './ingress.js';
import { capConnections, fileDescriptorLimit, Limits, SocketBudget } from './limits.js';
import { LoginGuard } from './loginGuard.js';

/** an output that publishes on the embedded broker (alerts/…) while it runs */
export interface BrokerOutput {
  attachBroker(aedes: Aedes): void;
  detachBroker(): void;
  /** mqtt.enabled: false: there will be no broker, keep nothing for it */
  noBroker(): void;
}

export interface BrokerPartDeps {
  readonly sink: SinkPart;
  readonly durable: LogPart;
  readonly pipeline: PipelinePart;
  readonly deadLetter: DeadLetterPart;
  readonly redis: RedisPart;
  readonly metadata: MetadataPart;
  readonly http: HttpPart;
  /** what follows every accepted reading, in order (src/ingest/consumer.ts) */
  readonly consumers: readonly ReadingConsumer[];
  readonly outputs: readonly BrokerOutput[];
}

/**
 * The embedded MQTT broker and its listeners (TCP, TLS, WebSocket on the HTTP
 * server), its logins and the ingress every publish passes: the start of the
 * data flow, so it starts last and stops first.
 */
export class BrokerPart implements Component {
  readonly name = 'broker';
  readonly check = 'mqtt';
  broker: Broker | null = null;
  /** the one ingress: the embedded listeners and the upstream input (bridge mode) feed it */
  ingress: Ingress | null = null;
  authenticator: Authenticator | null = null;
  private userLookup: UserLookup | null = null;
  private heapGuard: HeapGuard | null = null;
  port = 0;
  tlsPort = 0;

  constructor(
    private readonly ctx: NodeContext,
    private readonly deps: BrokerPartDeps,
  ) {}

  async start(): Promise<void> {
    const { cfg, log, metrics } = this.ctx;
    const { deps } = this;
    const cap = capConnections(cfg.mqtt.maxConnections, fileDescriptorLimit(), cfg.mqtt.fdReserve);
    if (cap.cappedFrom !== undefined) {
      log.warn(
        {
          configured: cap.cappedFrom,
          effective: cap.maxConnections,
          fdLimit: cap.fdLimit,
          reserve: cfg.mqtt.fdReserve,
        },
        `mqtt.maxConnections ${cap.cappedFrom} capped at ${cap.maxConnections}: the file descriptor limit (RLIMIT_NOFILE ${cap.fdLimit}) minus mqtt.fdReserve ${cfg.mqtt.fdReserve}; raise the limit (ulimit -n, LimitNOFILE=) for more connections`,
      );
    }
    if (cfg.auth.allowAnonymous && cfg.auth.allowAnonymousExplicit && !isLoopbackOnly(cfg)) {
      log.warn(
        { mqtt: cfg.mqtt.host, http: cfg.http.host },
        'anonymous MQTT access is allowed on a non-loopback listener',
      );
    }
    this.heapGuard = new HeapGuard(cfg.pipeline.gcAboveHeapBytes);
    const durableLog = deps.durable.log;
    const pipeline = deps.pipeline.pipeline;
    const deadLetter = deps.deadLetter.writer;
    const ingress = new Ingress({
      limits: { maxPayloadBytes: cfg.mqtt.maxPayloadBytes, ...cfg.ingest },
      buildings: deps.metadata.buildings,
      backslashMode: deps.sink.sink.backslashMode,
      newlines: deps.sink.sink.newlines,
      pipeline,
      durableLog,
      consumers: deps.consumers,
      deadLetter: (r) => deadLetter.append(r),
      metrics,
      log,
      rejectLog: new RateLimitedLog(log),
      admission: new Admission(durableLog, pipeline, metrics, cfg.pipeline, this.heapGuard),
    });
    this.ingress = ingress;
    this.authenticator = this.createAuthenticator();
    const tls = cfg.mqtt.tls;
    this.broker = new Broker({
      host: cfg.mqtt.host,
      port: cfg.mqtt.port,
      authenticator: this.authenticator,
      metrics,
      refusals: new RateLimitedLog(log),
      tls:
        tls.port !== undefined && tls.cert && tls.key
          ? {
              port: tls.port,
              maxPendingHandshakes: tls.maxPendingHandshakes,
              maxPendingHandshakesPerIp: tls.maxPendingHandshakesPerIp,
              cert: readPem('mqtt.tls.cert', tls.cert),
              key: readPem('mqtt.tls.key', tls.key),
              ca: tls.ca ? readPem('mqtt.tls.ca', tls.ca) : undefined,
            }
          : undefined,
      limits: new Limits({ ...cfg.mqtt, maxConnections: cap.maxConnections }),
      socketBudget: cap.maxSockets !== undefined ? new SocketBudget(cap.maxSockets) : undefined,
      maxTopicLevels: cfg.mqtt.maxTopicLevels,
      maxPacketBytes: cfg.mqtt.maxPacketBytes,
      connectTimeoutMs: cfg.mqtt.connectTimeoutMs,
      bounds: cfg.mqtt,
      liveRights: {
        lookupUsers: deps.metadata.sync ? (names) => deps.metadata.sync!.lookupUsers(names) : undefined,
        lookupSession:
          cfg.auth.redisSessions && deps.redis.client
            ? (id) => deps.redis.client!.get(`session:${id}`)
            : undefined,
        recheckIntervalMs: cfg.auth.recheckIntervalSeconds * 1000,
      },
      ingress,
      log,
      httpServer: deps.http.server,
      verifyUpgrade: (req) => deps.http.browsers.upgrade(req),
    });
    const broker = this.broker;
    deps.metadata.onSnapshot((s) => {
      const closed = broker.enforceDevices(s.devices);
      if (closed) log.info({ closed }, 'disconnected clients of disabled, removed or changed devices');
    });
    if (!cfg.mqtt.enabled) {
      for (const o of deps.outputs) o.noBroker();
      log.info('mqtt.enabled is false: no embedded broker, readings come from upstream.url');
      return;
    }
    await broker.start();
    for (const o of deps.outputs) o.attachBroker(broker.aedesInstance);
    this.port = broker.port;
    this.tlsPort = broker.tlsPort;
  }

  private createAuthenticator(): Authenticator {
    const { cfg, metrics, log } = this.ctx;
    const redis = this.deps.redis.client;
    const metadata = this.deps.metadata;
    // login look-ups have a pool of their own: a lock on users or a frozen PostgreSQL must not
    // take the metadata pool's connections, nor hold a login without an answer (issue 18 item 4)
    const users = cfg.postgres.url
      ? new UserLookup({
          url: cfg.postgres.url,
          poolSize: cfg.auth.loginLookupPoolSize,
          timeoutMs: cfg.auth.loginLookupTimeoutMs,
          maxWaiting: cfg.auth.loginLookupMaxWaiting,
          negativeTtlMs: cfg.auth.unknownUserCacheMs,
          negativeMax: cfg.auth.unknownUserCacheMax,
          log,
          onQuery: () => metrics.loginLookups.inc(),
          onRefused: () => metrics.loginLookupsRefused.inc(),
          onNegativeDropped: () => metrics.unknownUsersForgotten.inc(),
        })
      : null;
    this.userLookup = users;
    return new Authenticator({
      allowAnonymous: cfg.auth.allowAnonymous,
      devices: () => metadata.snapshot.devices,
      lookupUser: users ? (u) => users.lookup(u) : undefined,
      lookupTimeoutMs: cfg.auth.loginLookupTimeoutMs,
      lookupSession: cfg.auth.redisSessions && redis ? (id) => redis.get(`session:${id}`) : undefined,
      cache: new VerifiedCache(
        10_000,
        new DerivationSlots(cfg.auth.maxConcurrentKeyDerivations, cfg.auth.maxQueuedKeyDerivations),
        () => metrics.keyDerivations.inc(),
      ),
      guard: new LoginGuard({
        maxPerAddress: cfg.auth.maxFailedLoginsPerMinute,
        maxPerUser: cfg.auth.maxFailedLoginsPerUserPerMinute,
        burst: cfg.auth.failedLoginBurst,
        maxTracked: cfg.auth.maxTrackedLogins,
        sharedUserNames: cfg.auth.redisSessions ? ['session'] : [],
        onForgotten: () => metrics.loginWindowsForgotten.inc(),
      }),
      metrics,
      log,
      refusals: new RateLimitedLog(log),
    });
  }

  /** /api/* logins (HttpPart): the same credential sources as MQTT */
  readonly httpLogin: HttpLogin = async (user, password, address) => {
    if (!this.authenticator) return { ok: false };
    const r = await this.authenticator.authenticate('http', user, Buffer.from(password), undefined, address);
    if (r.ok) return { ok: true, role: r.principal.role };
    if (r.reason === 'login_rate' || r.reason === 'login_busy')
      return { ok: false, refusedFor: r.reason, retryAfterS: r.retryAfterS };
    return { ok: false };
  };

  get connectedClients(): number {
    return this.broker?.connectedClients ?? 0;
  }

  async probe(): Promise<{ enabled: false } | undefined> {
    if (!this.ctx.cfg.mqtt.enabled) return { enabled: false };
    if (!this.broker || this.port <= 0) throw new Error('not listening');
    return undefined;
  }

  async stop(): Promise<void> {
    this.heapGuard?.stop();
    for (const o of this.deps.outputs) o.detachBroker();
    if (this.ctx.cfg.mqtt.enabled) await this.broker?.close();
    await this.userLookup?.stop();
  }

  registerMetrics(m: NodeContext['metrics']): void {
    const guard = this.heapGuard!;
    m.counter(
      'energy_ingest_forced_gc_total',
      'full garbage collections requested because the heap passed pipeline.gcAboveHeapBytes',
      () => guard.collections,
    );
    m.gauge('energy_ingest_connected_clients', 'connected MQTT clients', () => this.connectedClients);
    m.counter(
      'energy_ingest_broker_unmatched_publishes_total',
      'messages published on this node that no subscription could match (finished without walking the topic trie)',
      () => this.broker?.unmatchedPublishes ?? 0,
    );
  }
}
