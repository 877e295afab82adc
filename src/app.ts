import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { mergeRules } from './alerts/rules.js';
import { AlertService } from './alerts/service.js';
import { Admission, HeapGuard } from './broker/admission.js';
import { Authenticator } from './broker/auth.js';
import { Broker, listen } from './broker/broker.js';
import { DerivationSlots, VerifiedCache } from './broker/credentials.js';
import { Ingress } from './broker/ingress.js';
import { capConnections, fileDescriptorLimit, Limits, SocketBudget } from './broker/limits.js';
import { LoginGuard } from './broker/loginGuard.js';
import { isLoopbackOnly } from './config/load.js';
import type { Config } from './config/types.js';
import { IngestError } from './errors.js';
import { ForecastService } from './forecast/service.js';
import { FORECAST_PREFIX } from './forecast/store.js';
import { LatestReadings } from './http/latest.js';
import { Metrics } from './http/metrics.js';
import { BrowserGuard } from './http/origin.js';
import { routes } from './http/routes.js';
import { createHttpServer, type Guard } from './http/server.js';
import { KnownBuildings } from './ingest/knownBuildings.js';
import { RedisLatestCache } from './latest/redisLatest.js';
import { RateLimitedLog } from './log.js';
import { configSnapshot, type MetadataSnapshot } from './metadata/snapshot.js';
import { MetadataSync } from './metadata/sync.js';
import { DeadLetterWriter } from './pipeline/deadLetter.js';
import { DrainProgress } from './pipeline/drainProgress.js';
import { DurableLog, logDir } from './pipeline/durableLog.js';
import { Pipeline } from './pipeline/pipeline.js';
import { jitteredBackoff } from './pipeline/retry.js';
import { BatchWriter } from './pipeline/writer.js';
import { redactText } from './redact.js';
import { createSink } from './sinks/detect.js';
import { InvalidRowsWatch } from './sinks/invalidRows.js';
import { ROLLUP_SINK, RollupSync } from './sinks/rollupSync.js';
import type { Sink } from './sinks/sink.js';

/** A PEM file named by the configuration, read once at start (unreadable: start-up stops, naming the key). */
function readPem(key: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new IngestError(
      'EI_CONFIG_INVALID',
      `invalid configuration:\n  ${key}: cannot read ${path}: ${(err as Error).message}`,
    );
  }
}

function readTls(cfg: Config): { port: number; cert: Buffer; key: Buffer; ca?: Buffer } | undefined {
  const t = cfg.mqtt.tls;
  if (t.port === undefined || !t.cert || !t.key) return undefined;
  return {
    port: t.port,
    cert: readPem('mqtt.tls.cert', t.cert),
    key: readPem('mqtt.tls.key', t.key),
    ca: t.ca ? readPem('mqtt.tls.ca', t.ca) : undefined,
  };
}

function readHttpTls(cfg: Config): { cert: Buffer; key: Buffer } | undefined {
  const { cert, key } = cfg.http.tls;
  if (!cert || !key) return undefined;
  return { cert: readPem('http.tls.cert', cert), key: readPem('http.tls.key', key) };
}

/*
 * Composition root. Data flows left to right; start-up runs right to left so
 * every stage has its consumer before it gets input, and stop runs left to
 * right so shutdown drains towards the sink:
 *
 *   MQTT/TCP ─┐                                   ┌─▶ InfluxDB v1 | v2 | file
 *   MQTT/WS  ─┴▶ broker ─▶ ingress ─▶ pipeline ───┤
 *                (Aedes)   (parse,     (batch,    └─▶ dead letter (rejections)
 *                          validate)   retry)
 */
export class App {
  readonly metrics = new Metrics();
  private sink: Sink | null = null;
  private deadLetter: DeadLetterWriter | null = null;
  private pipeline: Pipeline | null = null;
  private durableLog: DurableLog | null = null;
  private metadata: MetadataSync | null = null;
  private redis: Redis | null = null;
  private rollups: RollupSync | null = null;
  private alerts: AlertService | null = null;
  private latestCache: RedisLatestCache | null = null;
  private forecasts: ForecastService | null = null;
  private readyTimer: NodeJS.Timeout | null = null;
  private invalidRows: InvalidRowsWatch | null = null;
  private heapGuard: HeapGuard | null = null;
  private authenticator: Authenticator | null = null;
  snapshot: MetadataSnapshot;
  private writer: BatchWriter | null = null;
  private broker: Broker | null = null;
  private http: Server | null = null;
  private readonly startedAt = Date.now();
  readonly buildings: KnownBuildings;
  mqttPort = 0;
  mqttTlsPort = 0;
  httpPort = 0;

  constructor(
    readonly cfg: Config,
    readonly log: Logger,
  ) {
    this.buildings = new KnownBuildings(cfg.ingest.acceptUnknownBuildings);
    this.snapshot = configSnapshot(cfg.buildings);
    this.buildings.replace(cfg.buildings.map((b) => b.id));
  }

  async start(): Promise<void> {
    const { cfg, log, metrics } = this;
    const ioLog = new RateLimitedLog(log);
    /** a file or socket error on the hot path: retried by its owner, counted and logged here, never fatal */
    const ioError = (op: string, err: unknown) => {
      const code = (err as NodeJS.ErrnoException)?.code ?? 'unknown';
      metrics.ioErrors.inc({ op, code });
      ioLog.warn(`io:${op}:${code}`, { op, code }, `${op} failed (retrying): ${(err as Error)?.message}`);
    };
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
    // series beyond alerts.maxSeries in the latest-readings map and the roll-ups: counted, logged now and then
    const untracked = (table: 'latest' | 'rollups') => {
      metrics.seriesUntracked.inc({ table });
      ioLog.warn(
        `untracked-${table}`,
        { table, maxSeries: cfg.alerts.maxSeries },
        'alerts.maxSeries reached; readings of new series are not tracked here',
      );
    };
    this.deadLetter = new DeadLetterWriter({
      dataDir: cfg.dataDir,
      maxBytes: cfg.pipeline.deadLetterMaxBytes,
      maxFileBytes: cfg.pipeline.deadLetterMaxFileBytes,
      maxQueuedBytes: cfg.pipeline.deadLetterMaxQueuedBytes,
      onError: (err) => ioError('dead_letter_append', err),
      onDrop: (reason, n) => {
        metrics.deadLettersDropped.inc({ reason }, n);
        ioLog.warn(`deadletter-${reason}`, { reason }, 'dead letter dropped: over its disk budget or queue');
      },
    });
    await this.deadLetter.open();
    const deadLetter = this.deadLetter;

    this.sink = await createSink(cfg, log);
    try {
      await this.sink.connect();
      log.info({ sink: this.sink.name, backslashMode: this.sink.backslashMode }, 'sink ready');
    } catch (err) {
      // Down at start is an outage like any other: readings wait in the log. A
      // wrong bucket or token is not: those stop start-up with their message.
      if (!(err instanceof IngestError) || err.code !== 'EI_INFLUX_UNREACHABLE') throw err;
      log.warn(
        { sink: this.sink.name },
        `${err.message}; accepting readings into the durable log until it answers`,
      );
    }
    const influxUrl = cfg.influx.url;
    if (influxUrl && this.sink.newlines !== 'raw' && cfg.influx.invalidRowsCheckMs > 0) {
      // not InfluxDB (VictoriaMetrics): it answers 204 to rows it drops, so watch its own count of them
      this.invalidRows = new InvalidRowsWatch({
        url: influxUrl,
        intervalMs: cfg.influx.invalidRowsCheckMs,
        timeoutMs: cfg.influx.timeoutMs,
        onInvalid: (rows, total) => {
          metrics.sinkRowsInvalid.inc(undefined, rows);
          ioLog.warn(
            'sink-rows-invalid',
            { rows, total },
            'the sink server dropped line-protocol rows it could not parse (vm_rows_invalid_total)',
          );
        },
      });
      this.invalidRows.start();
    }

    this.writer = new BatchWriter({
      sink: this.sink,
      retry: jitteredBackoff({ minMs: cfg.pipeline.retryMinMs, maxMs: cfg.pipeline.retryMaxMs }),
      probeIntervalMs: cfg.pipeline.probeIntervalMs,
      metrics,
      log,
      deadLetter: (r) => deadLetter.append(r),
    });
    this.durableLog = await DurableLog.open({
      dir: logDir(cfg.dataDir),
      durability: cfg.pipeline.durability,
      maxBytes: cfg.pipeline.maxLogBytes,
      log,
      onIoError: ioError,
      softSinks: [ROLLUP_SINK],
    });
    const durableLog = this.durableLog;
    this.pipeline = new Pipeline(
      { ...cfg.pipeline, sinkName: 'influx', onReadError: (err) => ioError('log_read', err) },
      this.writer,
      durableLog,
      log,
    );
    const pipeline = this.pipeline;
    pipeline.start();

    if (cfg.redis.url) {
      // never blocks ingestion: commands fail fast while Redis is down and the client reconnects by itself
      this.redis = new Redis(cfg.redis.url, {
        lazyConnect: true,
        enableOfflineQueue: false,
        maxRetriesPerRequest: 1,
        // a server that accepts but never answers (frozen, half-open TCP) must fail commands, not hang them
        commandTimeout: 5000,
        retryStrategy: (times) => Math.min(times * 200, 5000),
      });
      // one line per transition, not per reconnect attempt
      let redisUp: boolean | null = null;
      this.redis.on('ready', () => {
        if (redisUp === false) log.info('Redis reachable again');
        redisUp = true;
      });
      this.redis.on('error', (err) => {
        if (redisUp !== false)
          log.warn({ err: err.message }, 'Redis unreachable; retrying in the background');
        redisUp = false;
      });
      const connected = this.redis.connect().catch(() => {}); // reported by the 'error' handler above
      // give a healthy Redis its moment before the broker opens (session logins, first cache write);
      // a dead one costs one second at start, then the client keeps retrying in the background
      await Promise.race([connected, new Promise((r) => setTimeout(r, 1000).unref())]);
    }
    if (cfg.postgres.url) {
      this.metadata = new MetadataSync({
        url: cfg.postgres.url,
        refreshCron: cfg.metadata.refreshCron,
        dataDir: cfg.dataDir,
        log,
        redis: this.redis,
        onSnapshot: (s) => this.useSnapshot(s),
      });
      await this.metadata.start();
      this.rollups = new RollupSync({
        url: cfg.postgres.url,
        dataDir: cfg.dataDir,
        flushIntervalMs: cfg.rollups.flushIntervalMs,
        durableLog,
        backslashMode: this.sink.backslashMode,
        log,
        maxRows: cfg.alerts.maxSeries,
        onUntracked: () => untracked('rollups'),
      });
      await this.rollups.start();
    }

    if (cfg.postgres.url && this.redis) {
      // contract section 17: roll-ups → model → forecast:{building_id}, every forecast.cron
      this.forecasts = new ForecastService({
        url: cfg.postgres.url,
        redis: this.redis,
        log,
        ...cfg.forecast,
      });
      this.forecasts.start();
    }

    this.alerts = new AlertService({
      dataDir: cfg.dataDir,
      locale: cfg.alerts.locale,
      fsync: cfg.pipeline.durability === 'fsync',
      redis: this.redis,
      maxQueued: cfg.alerts.maxQueued,
      maxSeries: cfg.alerts.maxSeries,
      maxActivePerBuilding: cfg.alerts.maxActivePerBuilding,
      metrics,
      log,
    });
    await this.alerts.open();
    this.applyRules();
    this.alerts.restore();
    const alerts = this.alerts;

    const latest = new LatestReadings({
      maxSeries: cfg.alerts.maxSeries,
      onUntracked: () => untracked('latest'),
    });
    if (this.redis && cfg.redis.latestCache) {
      this.latestCache = new RedisLatestCache({
        redis: this.redis,
        intervalMs: cfg.redis.latestIntervalMs,
        maxPending: cfg.redis.latestMaxPending,
        onDrop: (n) => {
          metrics.latestCacheDropped.inc(undefined, n);
          ioLog.warn(
            'latest-cache-full',
            { maxPending: cfg.redis.latestMaxPending },
            'redis.latestMaxPending reached; readings of new series are not cached in cache:latest:*',
          );
        },
        onError: (err) => {
          metrics.latestCacheErrors.inc();
          ioLog.warn(
            'latest-cache-error',
            { err: (err as Error)?.message },
            'cache:latest:* write failed; retried with the next flush',
          );
        },
        onWrite: (buildings) => metrics.latestCacheWrites.inc(undefined, buildings),
      });
      this.latestCache.start();
    }
    const latestCache = this.latestCache;
    const heapGuard = new HeapGuard(cfg.pipeline.gcAboveHeapBytes);
    this.heapGuard = heapGuard;
    const ingress = new Ingress({
      limits: { maxPayloadBytes: cfg.mqtt.maxPayloadBytes, ...cfg.ingest },
      buildings: this.buildings,
      backslashMode: this.sink.backslashMode,
      newlines: this.sink.newlines,
      pipeline,
      durableLog,
      rollups: this.rollups ?? undefined,
      alerts,
      // the status page's map, and the Redis cache beside it (no I/O here: it is written by its own timer)
      latest: latestCache
        ? {
            record: (readings, receivedAtMs) => {
              latest.record(readings, receivedAtMs);
              latestCache.record(readings);
            },
          }
        : latest,
      deadLetter: (r) => deadLetter.append(r),
      metrics,
      log,
      rejectLog: new RateLimitedLog(log),
      admission: new Admission(durableLog, pipeline, metrics, cfg.pipeline, heapGuard),
    });

    metrics.counter(
      'energy_ingest_forced_gc_total',
      'full garbage collections requested because the heap passed pipeline.gcAboveHeapBytes',
      () => heapGuard.collections,
    );
    metrics.gauge(
      'energy_ingest_connected_clients',
      'connected MQTT clients',
      () => this.broker?.connectedClients ?? 0,
    );
    metrics.gauge(
      'energy_ingest_pipeline_backlog_points',
      'points buffered in memory',
      () => pipeline.backlog,
    );
    metrics.gauge('energy_ingest_log_bytes', 'bytes held by the durable log', () => durableLog.bytes);
    metrics.counter(
      'energy_ingest_dead_lettered_total',
      'records written to DATA_DIR/deadletter',
      () => deadLetter.written,
    );
    metrics.gauge(
      'energy_ingest_dead_letter_bytes',
      'bytes held by DATA_DIR/deadletter',
      () => deadLetter.diskBytes,
    );
    metrics.counter(
      'energy_ingest_dead_letter_failures_total',
      'rejections that could not be written to the dead letter (disk full?)',
      () => deadLetter.failures,
    );
    metrics.gauge(
      'energy_ingest_metadata_age_seconds',
      'age of the building/rule/device metadata in use',
      () => Math.max(0, Math.round((Date.now() - Date.parse(this.snapshot.loadedAt)) / 1000)),
    );
    metrics.gauge('energy_ingest_alerts_active', 'alerts currently raised', () => alerts.activeCount);
    metrics.gauge(
      'energy_ingest_alert_delivery_queued',
      'alert events waiting for Redis',
      () => alerts.redisQueued,
    );
    metrics.gauge(
      'energy_ingest_log_oldest_unsent_age_seconds',
      'age of the oldest reading not yet written',
      () => this.oldestUnsentAgeS(),
    );

    const httpTls = readHttpTls(cfg);
    // Host and Origin checks against pages of other origins and DNS rebinding (src/http/origin.ts)
    const browsers = new BrowserGuard(
      {
        bindHost: cfg.http.host,
        allowedHosts: cfg.http.allowedHosts,
        allowedOrigins: cfg.http.allowedOrigins,
        tls: httpTls !== undefined,
      },
      metrics,
      log,
    );
    this.http = createHttpServer(
      routes({
        metrics,
        readiness: () => this.readiness(),
        status: () => this.status(),
        latest: () => latest.snapshot(),
        activeAlerts: (building) => alerts.active(building),
        snapshot: () => this.snapshot,
        forecast: this.redis ? (key) => this.redis!.get(`${FORECAST_PREFIX}${key}`) : undefined,
        recentEnergy: this.forecasts ? (id, hours) => this.forecasts!.recent(id, hours) : undefined,
      }),
      this.httpGuard(),
      httpTls,
      browsers,
    );
    this.httpPort = await listen(this.http, cfg.http.host, cfg.http.port, 'HTTP');
    // accept() failing (EMFILE when descriptors run out) must not end the process
    this.http.on('error', (err) => ioError('accept', err));

    if (cfg.auth.allowAnonymous && cfg.auth.allowAnonymousExplicit && !isLoopbackOnly(cfg)) {
      log.warn(
        { mqtt: cfg.mqtt.host, http: cfg.http.host },
        'anonymous MQTT access is allowed on a non-loopback listener',
      );
    }
    const refusals = new RateLimitedLog(log);
    const metadata = this.metadata;
    const authenticator = new Authenticator({
      allowAnonymous: cfg.auth.allowAnonymous,
      devices: () => this.snapshot.devices,
      lookupUser: metadata ? (u) => metadata.lookupUser(u) : undefined,
      lookupSession:
        cfg.auth.redisSessions && this.redis ? (id) => this.redis!.get(`session:${id}`) : undefined,
      cache: new VerifiedCache(
        10_000,
        new DerivationSlots(cfg.auth.maxConcurrentKeyDerivations, cfg.auth.maxQueuedKeyDerivations),
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
      refusals,
    });
    this.authenticator = authenticator;
    this.broker = new Broker({
      host: cfg.mqtt.host,
      port: cfg.mqtt.port,
      authenticator,
      metrics,
      refusals,
      tls: readTls(cfg),
      limits: new Limits({ ...cfg.mqtt, maxConnections: cap.maxConnections }),
      socketBudget: cap.maxSockets !== undefined ? new SocketBudget(cap.maxSockets) : undefined,
      maxTopicLevels: cfg.mqtt.maxTopicLevels,
      maxPacketBytes: cfg.mqtt.maxPacketBytes,
      connectTimeoutMs: cfg.mqtt.connectTimeoutMs,
      bounds: cfg.mqtt,
      ingress,
      log,
      httpServer: this.http,
      verifyUpgrade: (req) => browsers.upgrade(req),
    });
    await this.broker.start();
    alerts.attachBroker(this.broker.aedesInstance);
    await this.readiness();
    const writer = this.writer;
    const drain = new DrainProgress(
      {
        get bytesBehind() {
          return pipeline.bytesBehind;
        },
        get pointsWritten() {
          return metrics.pointsWritten.get();
        },
        get failing() {
          return writer.failingSince !== null;
        },
      },
      log,
    );
    this.readyTimer = setInterval(() => {
      void this.readiness().catch(() => {});
      drain.sample();
    }, 5000);
    this.readyTimer.unref();
    this.mqttPort = this.broker.port;
    this.mqttTlsPort = this.broker.tlsPort;
    log.info(
      {
        mqtt: `${cfg.mqtt.host}:${this.mqttPort}`,
        http: `${cfg.http.host}:${this.httpPort}`,
        anonymous: cfg.auth.allowAnonymous,
      },
      'energy-ingest started',
    );
  }

  /**
   * Whenever anonymous MQTT is not allowed, /api/* needs HTTP Basic credentials
   * of a dashboard or admin (the same sources as MQTT logins).
   */
  private httpGuard(): Guard | undefined {
    if (this.cfg.auth.allowAnonymous) return undefined;
    return async (user, password, address) => {
      if (!user || !this.authenticator) return false;
      const r = await this.authenticator.authenticate(
        'http',
        user,
        Buffer.from(password ?? ''),
        undefined,
        address,
      );
      if (!r.ok && (r.reason === 'login_rate' || r.reason === 'login_busy'))
        return { status: r.reason === 'login_rate' ? 429 : 503, retryAfterS: r.retryAfterS ?? 1 };
      return r.ok && (r.principal.role === 'dashboard' || r.principal.role === 'admin');
    };
  }

  /** config rules merged with the alert_rules rows of the current metadata (rows win) */
  private applyRules(): void {
    if (!this.alerts) return;
    const rules = mergeRules(this.cfg.alerts.rules, this.snapshot.alertRules, (id, problems) =>
      this.log.warn({ rule: id, problems }, 'alert_rules row skipped: it cannot be evaluated'),
    );
    this.alerts.setRules(rules);
  }

  private useSnapshot(s: MetadataSnapshot): void {
    this.snapshot = s;
    this.applyRules();
    this.buildings.replace(s.buildings.map((b) => b.id));
    const closed = this.broker?.enforceDevices(s.devices) ?? 0;
    if (closed) this.log.info({ closed }, 'disconnected clients of disabled or removed devices');
  }

  /** the last /ready answer, refreshed every few seconds for /api/status (which must not probe each time) */
  private lastReady: unknown = null;

  /** the most recent failure of each service, kept after it recovers (what went wrong, and when) */
  private readonly lastErrors = new Map<string, { error: string; at: string }>();

  async readiness(): Promise<{ ready: boolean; body: unknown }> {
    type Check = {
      ok: boolean;
      latency_ms?: number;
      error?: string;
      last_error?: { error: string; at: string } | null;
    };
    const checks: Record<string, Check> = {
      mqtt: { ok: this.broker !== null && this.mqttPort > 0 },
    };
    const timed = async (name: string, probe: () => Promise<unknown>) => {
      const t0 = performance.now();
      try {
        await Promise.race([
          probe(),
          new Promise((_, reject) => setTimeout(() => reject(new Error('timeout after 2 s')), 2000)),
        ]);
        checks[name] = { ok: true, latency_ms: Math.round(performance.now() - t0) };
      } catch (err) {
        // /ready and /api/status are unauthenticated: no URL with a password in them
        const error = redactText((err as Error).message);
        this.lastErrors.set(name, { error, at: new Date().toISOString() });
        checks[name] = { ok: false, latency_ms: Math.round(performance.now() - t0), error };
      }
      checks[name]!.last_error = this.lastErrors.get(name) ?? null;
    };
    const sink = this.sink;
    const writer = this.writer;
    if (sink && this.cfg.influx.url) {
      await timed('influxdb', async () => {
        await sink.ping();
        // answering /ping is not enough: a wrong token or a full disk refuses every write
        if (writer?.failingSince != null)
          throw new Error(
            `writes failing since ${new Date(writer.failingSince).toISOString()}: ${redactText(writer.lastError ?? '')}`,
          );
      });
    }
    if (this.redis) await timed('redis', () => this.redis!.ping());
    if (this.metadata) {
      const m = this.metadata;
      await timed('postgres', async () => {
        await m.ping();
        if (m.lastError) throw new Error(`last metadata load failed: ${m.lastError}`);
      });
    }
    // the InfluxDB check already fails on failing writes; this also covers the file sink, which has no check
    const ready = Object.values(checks).every((c) => c.ok) && this.writer?.failingSince == null;
    const result = {
      ready,
      body: {
        status: ready ? 'ready' : 'degraded',
        checks,
        log: { bytes: this.durableLog?.bytes ?? 0, oldest_unsent_age_s: this.oldestUnsentAgeS() },
        backlog_points: this.pipeline?.backlog ?? 0,
        last_write_error: this.writer?.lastError == null ? null : redactText(this.writer.lastError),
      },
    };
    this.lastReady = result.body;
    return result;
  }

  oldestUnsentAgeS(): number {
    const oldest = this.pipeline?.oldestUnsentMs;
    return oldest == null ? 0 : Math.max(0, Math.round((Date.now() - oldest) / 1000));
  }

  status(): unknown {
    const m = this.metrics;
    return {
      uptime_s: Math.round((Date.now() - this.startedAt) / 1000),
      sink: this.sink?.name,
      connected_clients: this.broker?.connectedClients ?? 0,
      messages_received: m.messagesReceived.get(),
      messages_rejected: m.messagesRejected.total(),
      alerts_active: this.alerts?.activeCount ?? 0,
      ready: this.lastReady,
      readings_accepted: m.readingsAccepted.get(),
      points_written: m.pointsWritten.get(),
      backlog_points: this.pipeline?.backlog ?? 0,
      log_bytes: this.durableLog?.bytes ?? 0,
      oldest_unsent_age_s: this.oldestUnsentAgeS(),
      catching_up: this.pipeline?.catchingUp ?? false,
      ingest_latency_p50_s: m.ingestLatency.quantile(0.5),
      ingest_latency_p99_s: m.ingestLatency.quantile(0.99),
      memory: memoryUsage(),
    };
  }

  /** Reverse of start: stop input first, drain the pipeline to the sink, then the outputs. */
  async stop(): Promise<void> {
    const deadline = Date.now() + this.cfg.pipeline.shutdownTimeoutMs;
    const { log } = this;
    if (this.readyTimer) clearInterval(this.readyTimer);
    this.invalidRows?.stop();
    this.heapGuard?.stop();
    this.alerts?.detachBroker();
    await this.broker?.close();
    if (this.pipeline) {
      const { unwritten, logBehind } = await this.pipeline.drain(deadline);
      if (unwritten || logBehind) {
        log.warn(
          { unwritten, logBytesBehind: logBehind },
          'stopped before everything was written: it stays in the durable log for the next start',
        );
      } else log.info('pipeline drained');
    }
    await this.alerts?.stop(deadline);
    await this.latestCache?.stop();
    await this.rollups?.stop();
    await this.durableLog?.close();
    await this.metadata?.stop();
    await this.forecasts?.stop();
    if (this.redis) await this.redis.quit().catch(() => this.redis?.disconnect());
    await this.deadLetter?.close();
    await this.sink?.close();
    const http = this.http;
    if (http) {
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    }
    const m = this.metrics;
    log.info(
      {
        uptimeS: Math.round((Date.now() - this.startedAt) / 1000),
        received: m.messagesReceived.get(),
        accepted: m.readingsAccepted.get(),
        written: m.pointsWritten.get(),
        rejected: m.messagesRejected.total(),
        qos0Dropped: m.qos0Dropped.get(),
        alerts: m.alerts.total(),
      },
      'energy-ingest stopped',
    );
  }
}

/** process.memoryUsage() reads /proc/self: out of file descriptors it throws, so the status says null instead */
function memoryUsage(): NodeJS.MemoryUsage | null {
  try {
    return process.memoryUsage();
  } catch {
    return null;
  }
}
