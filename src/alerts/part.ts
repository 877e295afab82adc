import type { Aedes } from 'aedes';
import type { Component, NodeContext } from '../component.js';
import type { ReadingConsumer } from '../ingest/consumer.js';
import type { Reading } from '../ingest/reading.js';
import type { MetadataPart } from '../metadata/part.js';
import type { RedisPart } from '../redis.js';
import { InvalidRowLog } from './rules.js';
import { AlertService } from './service.js';

/**
 * Threshold and offline alerts (contract section 11): evaluated once per
 * accepted reading, delivered to the embedded broker's alerts/… topics and to
 * Redis. Rules follow the metadata.
 */
export class AlertsPart implements Component, ReadingConsumer {
  readonly name = 'alerts';
  service!: AlertService;
  /** an invalid alert_rules row is logged once per change of the row, not on every reload */
  private readonly invalidRows = new InvalidRowLog();

  constructor(
    private readonly ctx: NodeContext,
    private readonly redis: RedisPart,
    private readonly metadata: MetadataPart,
  ) {}

  async start(): Promise<void> {
    const { cfg, metrics, log, scheduler } = this.ctx;
    this.service = new AlertService({
      dataDir: cfg.dataDir,
      locale: cfg.alerts.locale,
      fsync: cfg.pipeline.durability === 'fsync',
      redis: this.redis.client,
      maxQueued: cfg.alerts.maxQueued,
      maxSeries: cfg.alerts.maxSeries,
      maxActivePerBuilding: cfg.alerts.maxActivePerBuilding,
      metrics,
      log,
      scheduler,
      cluster:
        cfg.cluster.mode === 'redis'
          ? {
              nodeId: cfg.cluster.nodeId,
              maxPending: cfg.alerts.clusterMaxPending,
              counters: {
                claims: (outcome) => metrics.alertClusterClaims.inc({ outcome }),
                gate: (verdict) => metrics.alertClusterGate.inc({ verdict }),
                pendingDropped: () => metrics.alertClusterPendingDropped.inc(),
              },
            }
          : undefined,
    });
    await this.service.open();
    this.applyRules();
    this.metadata.onSnapshot(() => this.applyRules());
    this.service.restore();
  }

  /** config rules merged with the alert_rules rows of the current metadata (rows win) */
  private applyRules(): void {
    const rules = this.invalidRows.merge(
      this.ctx.cfg.alerts.rules,
      this.metadata.snapshot.alertRules,
      (id, problems) =>
        this.ctx.log.warn({ rule: id, problems }, 'alert_rules row skipped: it cannot be evaluated'),
    );
    this.service.setRules(rules);
  }

  consume(readings: readonly Reading[], receivedAtMs: number): void {
    // evaluated here and nowhere else: the pipeline's replays and retries never reach the alerts
    this.service.evaluate(readings, receivedAtMs);
  }

  attachBroker(aedes: Aedes): void {
    this.service.attachBroker(aedes);
  }

  noBroker(): void {
    this.service.noBroker();
  }

  /** before the broker closes: later events stay in the journal and are republished at next start */
  detachBroker(): void {
    this.service.detachBroker();
  }

  async stop(deadline: number): Promise<void> {
    await this.service.stop(deadline);
  }

  registerMetrics(m: NodeContext['metrics']): void {
    const s = this.service;
    m.gauge('energy_ingest_alerts_active', 'alerts currently raised', () => s.activeCount);
    m.gauge('energy_ingest_alert_delivery_queued', 'alert events waiting for Redis', () => s.redisQueued);
  }
}
