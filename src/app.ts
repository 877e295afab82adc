// first: the libraries loaded below make their debug loggers at load time
import './quietDebug.js';
import type { Logger } from 'pino';
import { AlertsPart } from './alerts/part.js';
import { BackupPart } from './backup/part.js';
import { BrokerPart } from './broker/part.js';
import { ClusterPart } from './cluster/part.js';
import { type Component, Lifecycle, nodeContext } from './component.js';
import type { Config } from './config/types.js';
import { DataDirLock } from './dataDirLock.js';
import { ForecastPart } from './forecast/part.js';
import { HttpPart } from './http/part.js';
import { Readiness } from './http/readiness.js';
import type { KnownBuildings } from './ingest/knownBuildings.js';
import { LatestReadings } from './latest/memory.js';
import { LatestCachePart } from './latest/part.js';
import { MetadataPart } from './metadata/part.js';
import type { MetadataSnapshot } from './metadata/snapshot.js';
import { Metrics } from './metrics.js';
import { DeadLetterPart, LogPart, PipelinePart } from './pipeline/parts.js';
import { RedisPart } from './redis.js';
import { RollupsPart } from './rollups/part.js';
import { ROLLUP_SINK } from './rollups/sync.js';
import { checkDataDir } from './safeFs.js';
import { Scheduler } from './scheduler.js';
import { SinkPart } from './sinks/part.js';
import { UpstreamPart } from './upstream/part.js';

/*
 * Composition root: the parts of a node in data-flow order, started in that
 * order (each has its consumers before it gets input) and stopped in reverse
 * (input first, then drain towards the sinks). docs/architecture.md draws it.
 *
 *   MQTT/TCP|TLS|WS ─▶ broker ─▶ ingress ─▶ durable log ─▶ pipeline ─▶ sink (InfluxDB v1 | v2 | file)
 *                      (Aedes)   (parse,     (fsync before   (batch,
 *                                 validate)   the PUBACK)     retry)
 *                                   │ └─▶ dead letter (rejections)
 *                                   └─▶ consumers: roll-ups (PostgreSQL), alerts (MQTT, Redis), latest readings
 *   side inputs: metadata (PostgreSQL or the config file), Redis
 */
export class App {
  readonly metrics = new Metrics();
  private readonly scheduler: Scheduler;
  private readonly lifecycle: Lifecycle;
  private readonly readinessProbe: Readiness;
  private readonly startedAt = Date.now();
  private readonly metadata: MetadataPart;
  private readonly broker: BrokerPart;
  private readonly http: HttpPart;
  private readonly pipeline: PipelinePart;
  private readonly sink: SinkPart;
  private readonly alerts: AlertsPart;
  private readonly durable: LogPart;
  private readonly upstream: UpstreamPart;

  constructor(
    readonly cfg: Config,
    readonly log: Logger,
  ) {
    this.scheduler = new Scheduler(log);
    const ctx = nodeContext(cfg, log, this.metrics, this.scheduler);
    const deadLetter = new DeadLetterPart(ctx);
    const sink = new SinkPart(ctx);
    const durable = new LogPart(ctx, [ROLLUP_SINK]);
    const redis = new RedisPart(ctx);
    const metadata = new MetadataPart(ctx, redis);
    const rollups = new RollupsPart(ctx, durable, sink);
    const alerts = new AlertsPart(ctx, redis, metadata);
    const latestCache = new LatestCachePart(ctx, redis);
    const forecast = new ForecastPart(ctx, redis);
    const pipeline = new PipelinePart(ctx, sink, durable, deadLetter);
    const latest = new LatestReadings({
      maxSeries: cfg.alerts.maxSeries,
      onUntracked: () => ctx.untracked('latest'),
    });
    let broker: BrokerPart | null = null;
    let cluster: ClusterPart | null = null;
    const http = new HttpPart(
      ctx,
      {
        readiness: () => this.readiness(),
        status: () => this.status(),
        latest: () => latest.snapshot(),
        activeAlerts: (building) => alerts.service.active(building),
        snapshot: () => metadata.snapshot,
        forecast: (key) => forecast.stored(key),
        recentEnergy: (id, hours) => forecast.recent(id, hours),
        cluster: () => (cluster ? cluster.nodes() : Promise.resolve([])),
      },
      (user, password, address) =>
        broker?.httpLogin(user, password, address) ?? Promise.resolve({ ok: false }),
    );
    broker = new BrokerPart(ctx, {
      sink,
      durable,
      pipeline,
      deadLetter,
      redis,
      metadata,
      http,
      consumers: [
        rollups,
        alerts,
        { name: 'latest', consume: (readings, receivedAtMs) => latest.record(readings, receivedAtMs) },
        latestCache,
      ],
      outputs: [alerts],
    });
    const upstream = new UpstreamPart(ctx, broker, alerts);
    // before anything is written there: refused (EI_DATA_DIR_UNSAFE) when others could plant links in it
    // then locked (daemon.lock): a second daemon or `drain` on a live node's log would corrupt it
    const lock = new DataDirLock(cfg.dataDir, `energy-ingest start (node ${cfg.cluster.nodeId})`, (stale) =>
      log.warn({ stale }, 'DATA_DIR lock left by a process that is gone: taken over'),
    );
    const dataDir: Component = {
      name: 'data-dir',
      start: async () => {
        await checkDataDir(cfg.dataDir);
        await lock.acquire();
      },
      stop: () => lock.release(),
    };
    const parts: Component[] = [
      dataDir,
      deadLetter,
      sink,
      durable,
      redis,
      metadata,
      rollups,
      alerts,
      latestCache,
      forecast,
      pipeline,
      http,
      broker,
      upstream,
      new BackupPart(ctx),
    ];
    // redis mode: cross-node delivery, cluster-wide retained messages, the node registry (contract section 14);
    // after the broker, whose Aedes it joins
    if (cfg.cluster.mode === 'redis') {
      const b = broker;
      cluster = new ClusterPart(ctx, {
        aedes: () => b.broker!.aedesInstance,
        stats: () => ({
          mqttPort: b.port,
          httpPort: http.port,
          connectedClients: b.connectedClients,
          backlog: pipeline.pipeline?.backlog ?? 0,
        }),
      });
      parts.push(cluster);
    }
    this.lifecycle = new Lifecycle(parts, this.metrics, log);
    this.readinessProbe = new Readiness(
      () => this.lifecycle.checked,
      () => pipeline.readiness(),
    );
    this.metadata = metadata;
    this.broker = broker;
    this.http = http;
    this.pipeline = pipeline;
    this.sink = sink;
    this.alerts = alerts;
    this.durable = durable;
    this.upstream = upstream;
  }

  async start(): Promise<void> {
    await this.lifecycle.start();
    await this.readiness();
    // /api/status shows the last /ready answer, which must not be probed per request
    this.scheduler.every('readiness', 5000, () => this.readiness());
    const { cfg } = this;
    this.log.info(
      {
        mqtt: `${cfg.mqtt.host}:${this.mqttPort}`,
        http: `${cfg.http.host}:${this.httpPort}`,
        anonymous: cfg.auth.allowAnonymous,
      },
      'energy-ingest started',
    );
  }

  /** Reverse of start: stop input first, drain the pipeline to the sink, then the outputs. */
  async stop(): Promise<void> {
    const deadline = Date.now() + this.cfg.pipeline.shutdownTimeoutMs;
    this.scheduler.stop('readiness');
    await this.lifecycle.stop(deadline);
    this.scheduler.stop();
    const m = this.metrics;
    this.log.info(
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

  readiness(): Promise<{ ready: boolean; body: unknown }> {
    return this.readinessProbe.check();
  }

  status(): unknown {
    const m = this.metrics;
    const pipeline = this.pipeline.pipeline;
    return {
      uptime_s: Math.round((Date.now() - this.startedAt) / 1000),
      sink: this.sink.sink?.name,
      connected_clients: this.broker.connectedClients,
      upstream: this.upstream.input?.health() ?? null,
      messages_received: m.messagesReceived.get(),
      messages_rejected: m.messagesRejected.total(),
      alerts_active: this.alerts.service?.activeCount ?? 0,
      ready: this.readinessProbe.last,
      readings_accepted: m.readingsAccepted.get(),
      points_written: m.pointsWritten.get(),
      backlog_points: pipeline?.backlog ?? 0,
      log_bytes: this.durable.log?.bytes ?? 0,
      oldest_unsent_age_s: this.pipeline.oldestUnsentAgeS(),
      catching_up: pipeline?.catchingUp ?? false,
      ingest_latency_p50_s: m.ingestLatency.quantile(0.5),
      ingest_latency_p99_s: m.ingestLatency.quantile(0.99),
      memory: memoryUsage(),
      jobs: this.scheduler.list(),
    };
  }

  // what tests and the CLI read of a running node
  get snapshot(): MetadataSnapshot {
    return this.metadata.snapshot;
  }
  get buildings(): KnownBuildings {
    return this.metadata.buildings;
  }
  get mqttPort(): number {
    return this.broker.port;
  }
  get mqttTlsPort(): number {
    return this.broker.tlsPort;
  }
  get httpPort(): number {
    return this.http.port;
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
