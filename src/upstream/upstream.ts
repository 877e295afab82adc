import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { AlertEvent } from '../alerts/evaluator.js';
import { readPem } from '../config/pem.js';
import type { Config } from '../config/types.js';
import type { Metrics } from '../metrics.js';
import { redactUrl } from '../redact.js';
import { UpstreamAlertOutput } from './alerts.js';
import { UpstreamConnection, type UpstreamIngress } from './connection.js';

// Bridge mode (contract section 15): a side input beside the embedded broker.
// upstream.connections subscriber connections to an existing broker feed the
// same ingress as the embedded listener (parse, dead letter, durable log with
// its group commit, alerts, roll-ups); each connection acknowledges upstream
// only after the fsync of the records it received (connection.ts).

export interface UpstreamOptions {
  readonly cfg: Config['upstream'];
  /** cluster.nodeId when there is one, else the host name */
  readonly nodeId?: string;
  readonly ingress: UpstreamIngress;
  readonly metrics: Metrics;
  readonly log: Logger;
  /** the active alerts, republished (retained) on every connect of the publishing connection */
  readonly activeAlerts?: () => readonly AlertEvent[];
}

/** energy-ingest-{nodeId}, and -{n} for each of several connections (stable across restarts) */
export function upstreamClientIds(cfg: Config['upstream'], nodeId = hostname()): string[] {
  const base = cfg.clientId ?? `energy-ingest-${nodeId}`;
  if (cfg.connections === 1) return [base];
  return Array.from({ length: cfg.connections }, (_, i) => `${base}-${i + 1}`);
}

export function upstreamTls(cfg: Config['upstream']): { ca?: Buffer; cert?: Buffer; key?: Buffer } {
  const out: { ca?: Buffer; cert?: Buffer; key?: Buffer } = {};
  const ca = cfg.tls.ca ? readPem('upstream.tls.ca', cfg.tls.ca) : undefined;
  const cert = cfg.tls.cert ? readPem('upstream.tls.cert', cfg.tls.cert) : undefined;
  const key = cfg.tls.key ? readPem('upstream.tls.key', cfg.tls.key) : undefined;
  if (ca) out.ca = ca;
  if (cert) out.cert = cert;
  if (key) out.key = key;
  return out;
}

export interface UpstreamHealth {
  ok: boolean;
  url: string;
  connections: number;
  connected: number;
  subscribed: number;
  messages_waiting: number;
  error?: string;
}

export class UpstreamInput {
  readonly connections: UpstreamConnection[];
  readonly alerts: UpstreamAlertOutput | null;

  constructor(private readonly opts: UpstreamOptions) {
    const { cfg } = opts;
    if (!cfg.url) throw new Error('upstream.url is not set');
    const url = cfg.url;
    const tls = upstreamTls(cfg);
    const ids = upstreamClientIds(cfg, opts.nodeId);
    this.alerts = cfg.publishAlerts ? new UpstreamAlertOutput(opts.metrics, opts.log) : null;
    this.connections = ids.map(
      (clientId, index) =>
        new UpstreamConnection({
          index,
          url,
          clientId,
          topics: cfg.topics,
          shareGroup: cfg.shareGroup,
          username: cfg.username,
          password: cfg.password,
          protocolVersion: cfg.protocolVersion,
          maxInflight: cfg.maxInflight,
          sessionExpirySeconds: cfg.sessionExpirySeconds,
          reconnectMinMs: cfg.reconnectMinMs,
          reconnectMaxMs: cfg.reconnectMaxMs,
          tls,
          ingress: opts.ingress,
          log: opts.log,
          // alerts go out on the first connection; the retained state is restated on each of its connects
          onConnect:
            index === 0 && this.alerts
              ? () => this.alerts?.republish(opts.activeAlerts?.() ?? [])
              : undefined,
        }),
    );
    this.alerts?.attach(this.connections[0]!.client);
    this.registerMetrics();
    opts.log.info(
      {
        // (a key named url is censored whole by the logger; this one is redacted of its password only)
        broker: redactUrl(url),
        clientIds: ids,
        topics: cfg.topics,
        shareGroup: cfg.shareGroup || null,
        protocolVersion: cfg.protocolVersion,
      },
      'upstream input connecting',
    );
  }

  /** resolves once every connection has had its first CONNACK (or after timeoutMs: an outage at start is like any outage) */
  async waitConnected(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && this.connections.some((c) => !c.subscribed))
      await new Promise((r) => setTimeout(r, 25));
  }

  health(): UpstreamHealth {
    const cs = this.connections;
    const connected = cs.filter((c) => c.connected).length;
    const subscribed = cs.filter((c) => c.subscribed).length;
    const h: UpstreamHealth = {
      ok: connected === cs.length && subscribed === cs.length,
      url: redactUrl(this.opts.cfg.url!),
      connections: cs.length,
      connected,
      subscribed,
      messages_waiting: cs.reduce((n, c) => n + c.inflight, 0),
    };
    const err = cs.find((c) => c.lastError)?.lastError;
    if (!h.ok) h.error = err ?? (connected < cs.length ? 'not connected' : 'not subscribed');
    return h;
  }

  private registerMetrics(): void {
    const { metrics } = this.opts;
    const per = (read: (c: UpstreamConnection) => number) => () =>
      this.connections.map((c, i) => ({ labels: { connection: String(i) }, value: read(c) }));
    metrics.sampledSeries(
      'energy_ingest_upstream_connected',
      'upstream broker connections connected and subscribed (1) or not (0), by connection',
      'gauge',
      per((c) => (c.connected && c.subscribed ? 1 : 0)),
    );
    metrics.sampledSeries(
      'energy_ingest_upstream_inflight',
      'upstream messages received and not yet acknowledged (waiting for the log fsync), by connection',
      'gauge',
      per((c) => c.inflight),
    );
    metrics.sampledSeries(
      'energy_ingest_upstream_messages_total',
      'PUBLISH packets received from the upstream broker, by connection',
      'counter',
      per((c) => c.messages),
    );
    metrics.sampledSeries(
      'energy_ingest_upstream_acks_total',
      'PUBACKs sent to the upstream broker (after the log fsync), by connection',
      'counter',
      per((c) => c.acks),
    );
    metrics.sampledSeries(
      'energy_ingest_upstream_connects_total',
      'successful connections (CONNACK) to the upstream broker, by connection',
      'counter',
      per((c) => c.connects),
    );
    metrics.sampledSeries(
      'energy_ingest_upstream_disconnects_total',
      'upstream connections lost after a CONNACK, by connection',
      'counter',
      per((c) => c.disconnects),
    );
    metrics.sampledSeries(
      'energy_ingest_upstream_ingest_failures_total',
      'upstream messages that could not be ingested (the connection was dropped so the broker resends), by connection',
      'counter',
      per((c) => c.failures),
    );
  }

  /** stop input first (App.stop): what is durable is acknowledged, the rest stays with the broker */
  async stop(deadline: number): Promise<void> {
    // alerts raised during shutdown stay in the journal and are republished at the next start
    this.alerts?.detach();
    await Promise.all(this.connections.map((c) => c.stop(Math.min(deadline, Date.now() + 5000))));
  }
}
