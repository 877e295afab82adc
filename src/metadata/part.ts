import type { Component, NodeContext } from '../component.js';
import { KnownBuildings } from '../ingest/knownBuildings.js';
import type { RedisPart } from '../redis.js';
import { configSnapshot, type MetadataSnapshot } from './snapshot.js';
import { MetadataSync } from './sync.js';

/**
 * Building, device and rule metadata (contract section 8): from PostgreSQL
 * when DATABASE_URL is set (answering the /ready check "postgres"), else from
 * the config file's `buildings:`. Other parts follow it with onSnapshot.
 */
export class MetadataPart implements Component {
  readonly name = 'metadata';
  snapshot: MetadataSnapshot;
  readonly buildings: KnownBuildings;
  sync: MetadataSync | null = null;
  private readonly listeners: Array<(s: MetadataSnapshot) => void> = [];

  constructor(
    private readonly ctx: NodeContext,
    private readonly redis: RedisPart,
  ) {
    const { cfg } = ctx;
    this.buildings = new KnownBuildings(cfg.ingest.acceptUnknownBuildings);
    this.snapshot = configSnapshot(cfg.buildings);
    this.buildings.replace(cfg.buildings.map((b) => b.id));
  }

  get check(): string | undefined {
    return this.ctx.cfg.postgres.url ? 'postgres' : undefined;
  }

  /** called with every new snapshot, after the known buildings follow it; must not throw */
  onSnapshot(listener: (s: MetadataSnapshot) => void): void {
    this.listeners.push(listener);
  }

  async start(): Promise<void> {
    const { cfg, log } = this.ctx;
    if (!cfg.postgres.url) return;
    this.sync = new MetadataSync({
      url: cfg.postgres.url,
      refreshCron: cfg.metadata.refreshCron,
      minReloadIntervalMs: cfg.metadata.minReloadIntervalMs,
      reloadRetryMinMs: cfg.metadata.reloadRetryMinMs,
      reloadRetryMaxMs: cfg.metadata.reloadRetryMaxMs,
      dataDir: cfg.dataDir,
      log,
      scheduler: this.ctx.scheduler,
      redis: this.redis.client,
      onSnapshot: (s) => this.use(s),
    });
    await this.sync.start();
  }

  private use(s: MetadataSnapshot): void {
    this.snapshot = s;
    this.buildings.replace(s.buildings.map((b) => b.id));
    for (const l of this.listeners) l(s);
  }

  async probe(): Promise<void> {
    const m = this.sync;
    if (!m) return;
    await m.ping();
    if (m.lastError) throw new Error(`last metadata load failed: ${m.lastError}`);
  }

  async stop(): Promise<void> {
    await this.sync?.stop();
  }

  registerMetrics(m: NodeContext['metrics']): void {
    m.gauge('energy_ingest_metadata_age_seconds', 'age of the building/rule/device metadata in use', () =>
      Math.max(0, Math.round((Date.now() - Date.parse(this.snapshot.loadedAt)) / 1000)),
    );
    const sync = this.sync;
    if (!sync) return;
    m.counter(
      'energy_ingest_metadata_reloads_total',
      'metadata snapshots loaded from PostgreSQL (start, cron, NOTIFY, retries)',
      () => sync.reloads.reloads,
    );
    m.counter(
      'energy_ingest_metadata_reload_failures_total',
      'metadata reloads that failed (each is retried with backoff)',
      () => sync.reloads.failures,
    );
    m.counter(
      'energy_ingest_metadata_notifications_total',
      'NOTIFY energy_ingest_metadata received',
      () => sync.notifications,
    );
    m.counter(
      'energy_ingest_metadata_reload_requests_coalesced_total',
      'reload requests (NOTIFY, cron) merged into a reload already pending',
      () => sync.reloads.coalesced,
    );
  }
}
