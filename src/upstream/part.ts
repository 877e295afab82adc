import type { AlertsPart } from '../alerts/part.js';
import type { BrokerPart } from '../broker/part.js';
import type { Component, NodeContext } from '../component.js';
import { UpstreamInput } from './upstream.js';

/**
 * Bridge mode (contract section 15): readings from an existing broker enter
 * the same ingress as the embedded listener's, acknowledged upstream after the
 * log's fsync; alert events go out to that broker too. Answers /ready "upstream".
 */
export class UpstreamPart implements Component {
  readonly name = 'upstream';
  input: UpstreamInput | null = null;

  constructor(
    private readonly ctx: NodeContext,
    private readonly broker: BrokerPart,
    private readonly alerts: AlertsPart,
  ) {}

  get check(): string | undefined {
    return this.ctx.cfg.upstream.url ? 'upstream' : undefined;
  }

  async start(): Promise<void> {
    const { cfg, metrics, log } = this.ctx;
    if (!cfg.upstream.url) return;
    const service = this.alerts.service;
    this.input = new UpstreamInput({
      cfg: cfg.upstream,
      nodeId: cfg.cluster.nodeId,
      ingress: this.broker.ingress!,
      metrics,
      log,
      activeAlerts: () => service.active(),
    });
    if (this.input.alerts) service.addOutput(this.input.alerts);
    // a broker that is down at start is an outage like any other: the connections keep retrying
    await this.input.waitConnected(3000);
  }

  /** connected, subscribed and messages waiting for their PUBACK, per the contract's checks.upstream */
  async probe(): Promise<Record<string, unknown>> {
    return { ...(this.input?.health() ?? { ok: false, error: 'not started' }) };
  }

  async stop(deadline: number): Promise<void> {
    await this.input?.stop(deadline);
  }
}
