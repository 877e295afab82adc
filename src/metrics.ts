import { collectDefaultMetrics, Registry } from 'prom-client';

// The daemon's metrics. Counters and histograms on the per-message path are
// plain numbers here (a prom-client label lookup per message would cost more
// than the rest of the bookkeeping); prom-client's registry renders them,
// together with its default process metrics, through collect-time adapters.

/** What prom-client's Registry needs of a metric (its own metric classes have the same shape). */
interface PromMetric {
  readonly name: string;
  get(): Promise<{
    name: string;
    help: string;
    type: 'counter' | 'gauge' | 'histogram';
    aggregator: 'sum';
    values: Array<{ labels: Record<string, string | number>; value: number; metricName?: string }>;
  }>;
  reset(): void;
}

type Labels = Readonly<Record<string, string>>;

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(
    ([k, v]) => `${k}="${v.replace(/["\\\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`))}"`,
  );
  return parts.length ? `{${parts.join(',')}}` : '';
}

export class Counter {
  private readonly values = new Map<string, { labels: Labels; value: number }>();
  /** the label-free series, kept apart because it is bumped per message */
  private plain = 0;
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}

  inc(labels?: Labels, by = 1): void {
    if (labels === undefined) {
      this.plain += by;
      return;
    }
    const key = labelText(labels);
    const cur = this.values.get(key);
    if (cur) cur.value += by;
    else this.values.set(key, { labels, value: by });
  }

  /** every series added up */
  total(): number {
    let n = this.plain;
    for (const v of this.values.values()) n += v.value;
    return n;
  }

  get(labels?: Labels): number {
    if (labels === undefined) return this.plain;
    return this.values.get(labelText(labels))?.value ?? 0;
  }

  prom(): PromMetric {
    return {
      name: this.name,
      reset: () => {},
      get: async () => {
        const values: Array<{ labels: Record<string, string>; value: number }> = [];
        if (this.values.size === 0 || this.plain > 0) values.push({ labels: {}, value: this.plain });
        for (const v of this.values.values()) values.push({ labels: { ...v.labels }, value: v.value });
        return { name: this.name, help: this.help, type: 'counter', aggregator: 'sum', values };
      },
    };
  }
}

/** A value that lives elsewhere, read at scrape time: a gauge, or a counter its owner keeps. */
export class Sampled {
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly read: () => number,
    private readonly type: 'gauge' | 'counter' = 'gauge',
  ) {}

  prom(): PromMetric {
    return {
      name: this.name,
      reset: () => {},
      get: async () => ({
        name: this.name,
        help: this.help,
        type: this.type,
        aggregator: 'sum',
        values: [{ labels: {}, value: this.read() }],
      }),
    };
  }
}

export class Histogram {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: readonly number[],
  ) {
    this.counts = new Array(buckets.length).fill(0);
  }

  observe(v: number): void {
    this.sum += v;
    this.count++;
    for (let i = 0; i < this.buckets.length; i++) {
      if (v <= this.buckets[i]!) {
        this.counts[i]!++;
        return;
      }
    }
  }

  /** Linear interpolation inside the bucket holding quantile q; good enough for reports. */
  quantile(q: number): number {
    if (this.count === 0) return 0;
    const rank = q * this.count;
    let seen = 0;
    for (let i = 0; i < this.buckets.length; i++) {
      const c = this.counts[i]!;
      if (seen + c >= rank && c > 0) {
        const lo = i === 0 ? 0 : this.buckets[i - 1]!;
        return lo + ((this.buckets[i]! - lo) * (rank - seen)) / c;
      }
      seen += c;
    }
    return this.buckets.at(-1)!;
  }

  get total(): number {
    return this.count;
  }

  prom(): PromMetric {
    return {
      name: this.name,
      reset: () => {},
      get: async () => {
        const values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> =
          [];
        let cum = 0;
        this.buckets.forEach((b, i) => {
          cum += this.counts[i]!;
          values.push({ labels: { le: b }, value: cum, metricName: `${this.name}_bucket` });
        });
        values.push({ labels: { le: '+Inf' }, value: this.count, metricName: `${this.name}_bucket` });
        values.push({ labels: {}, value: this.sum, metricName: `${this.name}_sum` });
        values.push({ labels: {}, value: this.count, metricName: `${this.name}_count` });
        return { name: this.name, help: this.help, type: 'histogram', aggregator: 'sum', values };
      },
    };
  }
}

const LATENCY_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.25, 1.5, 2, 3, 5, 10, 30, 60, 300,
];

/** Every metric of the daemon, in one place (contract section 10). */
export class Metrics {
  readonly messagesReceived = new Counter(
    'energy_ingest_messages_received_total',
    'MQTT publishes received on sensors/',
  );
  readonly readingsAccepted = new Counter(
    'energy_ingest_readings_accepted_total',
    'readings accepted for writing',
  );
  readonly messagesRejected = new Counter(
    'energy_ingest_messages_rejected_total',
    'rejected messages (dead-lettered), by reason',
  );
  readonly pointsWritten = new Counter('energy_ingest_points_written_total', 'points accepted by the sink');
  readonly writeErrors = new Counter(
    'energy_ingest_write_errors_total',
    'failed sink writes (each retried or split), by kind',
  );
  readonly writeDuration = new Histogram(
    'energy_ingest_write_duration_seconds',
    'duration of one sink write',
    LATENCY_BUCKETS,
  );
  readonly ingestLatency = new Histogram(
    'energy_ingest_ingest_latency_seconds',
    'receipt to written',
    LATENCY_BUCKETS,
  );
  readonly backpressureWaits = new Counter(
    'energy_ingest_backpressure_waits_total',
    'publishes whose acknowledgement waited for room in the pipeline',
  );
  readonly admissionWaits = new Counter(
    'energy_ingest_admission_waits_total',
    'publishers held (their socket read more slowly) because the daemon was behind, by reason',
  );
  readonly authRefused = new Counter(
    'energy_ingest_auth_refused_total',
    'refused connections, publishes and subscriptions, by reason',
  );
  readonly httpRefused = new Counter(
    'energy_ingest_http_refused_total',
    'HTTP requests and WebSocket upgrades refused by http.allowedHosts (host) or http.allowedOrigins (origin), by reason',
  );
  readonly loginWindowsForgotten = new Counter(
    'energy_ingest_login_failures_forgotten_total',
    'failed-login counts dropped before their minute ended because auth.maxTrackedLogins was reached',
  );
  readonly keyDerivations = new Counter(
    'energy_ingest_key_derivations_total',
    'password key derivations (scrypt/pbkdf2) started for logins, real or dummy',
  );
  readonly loginLookups = new Counter(
    'energy_ingest_login_lookups_total',
    'users look-ups sent to PostgreSQL at login (unknown names remembered for auth.unknownUserCacheMs are not)',
  );
  readonly loginLookupsRefused = new Counter(
    'energy_ingest_login_lookups_refused_total',
    'logins answered 0x03 at once because auth.loginLookupMaxWaiting look-ups were already waiting for a connection',
  );
  readonly unknownUsersForgotten = new Counter(
    'energy_ingest_unknown_users_forgotten_total',
    'unknown user names forgotten before auth.unknownUserCacheMs because auth.unknownUserCacheMax was reached',
  );
  readonly throttled = new Counter(
    'energy_ingest_throttled_total',
    'publishes held back by the per-client message rate limit',
  );
  readonly qos0Dropped = new Counter(
    'energy_ingest_qos0_dropped_total',
    'QoS 0 readings dropped because the pipeline was full',
  );
  readonly deadLettersDropped = new Counter(
    'energy_ingest_dead_letters_dropped_total',
    'rejections not written to DATA_DIR/deadletter: over its disk budget or its write queue, by reason',
  );
  readonly seriesUntracked = new Counter(
    'energy_ingest_series_untracked_total',
    'readings of new series not tracked because alerts.maxSeries was reached, by table (alerts, latest, rollups)',
  );
  // the latest-readings cache in Redis (contract section 16)
  readonly latestCacheDropped = new Counter(
    'energy_ingest_latest_cache_dropped_total',
    'readings not cached in cache:latest:* because redis.latestMaxPending series were already waiting',
  );
  readonly latestCacheWrites = new Counter(
    'energy_ingest_latest_cache_writes_total',
    'building hashes written to cache:latest:* (at most one per building per redis.latestIntervalMs)',
  );
  readonly latestCacheErrors = new Counter(
    'energy_ingest_latest_cache_errors_total',
    'cache:latest:* flushes Redis refused or did not answer (their entries wait for the next one)',
  );
  readonly alertsRefused = new Counter(
    'energy_ingest_alerts_refused_total',
    'alerts not raised because alerts.maxActivePerBuilding were active in that building, by reason',
  );
  readonly alerts = new Counter('energy_ingest_alerts_total', 'alert events, by state and severity');
  readonly alertDeliveryDropped = new Counter(
    'energy_ingest_alert_delivery_dropped_total',
    'alert events not delivered because the output queue was full, by output',
  );
  readonly alertClusterClaims = new Counter(
    'energy_ingest_alert_cluster_claims_total',
    'cluster mode: series ownership claims by outcome (new, moved, refresh, failed)',
  );
  readonly alertClusterGate = new Counter(
    'energy_ingest_alert_cluster_gate_total',
    'cluster mode: alert events by the gate verdict (ok, dup, exists, absent, not_owner, stale, unreachable)',
  );
  readonly alertClusterPendingDropped = new Counter(
    'energy_ingest_alert_cluster_pending_dropped_total',
    'cluster mode: readings not evaluated because alerts.clusterMaxPending of their series waited for its claim',
  );
  readonly alertDeliveryRetries = new Counter(
    'energy_ingest_alert_delivery_retries_total',
    'failed alert deliveries that were retried, by output',
  );
  readonly backups = new Counter(
    'energy_ingest_backups_total',
    'scheduled backups (backup.cron) by result: ok, failed (the set is marked incomplete)',
  );
  readonly writeRetries = new Counter(
    'energy_ingest_write_retries_total',
    'sink writes retried after a network error, 5xx, 429 or auth failure',
  );
  // the broker's memory bounds (issue 11)
  readonly slowConsumersDisconnected = new Counter(
    'energy_ingest_slow_consumers_disconnected_total',
    'clients disconnected because more than mqtt.maxQueuedBytesPerClient waited for them',
  );
  readonly offlineDropped = new Counter(
    'energy_ingest_offline_messages_dropped_total',
    'oldest messages dropped from persistent sessions beyond their count or byte budget',
  );
  readonly sessionsExpired = new Counter(
    'energy_ingest_sessions_expired_total',
    'persistent sessions removed after mqtt.sessionExpirySeconds disconnected',
  );
  // rights of connected clients follow their rows and sessions (issue 18, items 2 and 3; src/broker/liveRights.ts)
  readonly liveRightsChanged = new Counter(
    'energy_ingest_live_rights_changed_total',
    'connected clients whose role or building changed and who kept their connection with the new rights',
  );
  readonly liveSubscriptionsRemoved = new Counter(
    'energy_ingest_live_subscriptions_removed_total',
    'subscriptions removed from connected clients (and their stored sessions) whose new rights do not allow them',
  );
  readonly liveRightsDisconnected = new Counter(
    'energy_ingest_live_rights_disconnected_total',
    'connected clients disconnected because their device or user row, password or Redis session was revoked, by reason',
  );
  readonly liveRightsChecksFailed = new Counter(
    'energy_ingest_live_rights_checks_failed_total',
    're-checks of connected logins that failed (the clients keep their rights until a check succeeds), by store',
  );
  readonly retainedRefused = new Counter(
    'energy_ingest_retained_refused_total',
    'retained messages not stored (still delivered live), by reason: sensor, too_large, count, bytes',
  );
  readonly tlsHandshakesRefused = new Counter(
    'energy_ingest_tls_handshakes_refused_total',
    'TLS connections closed before their handshake completed, by reason: refused at accept (too_many_connections, too_many_handshakes, handshakes_per_address, connect_rate) or not done within mqtt.connectTimeoutMs (timeout)',
  );
  readonly webSocketRefused = new Counter(
    'energy_ingest_websocket_refused_total',
    'WebSocket upgrades refused (503) beyond mqtt.maxPendingWebSocketConnections',
  );
  readonly sinkProbes = new Counter(
    'energy_ingest_sink_probes_total',
    'cheap round trips (InfluxDB /ping, file writability) made while sink writes fail, by result',
  );
  readonly ioErrors = new Counter(
    'energy_ingest_io_errors_total',
    'file and socket errors on the hot path (retried, never fatal), by operation and code',
  );
  readonly consumerErrors = new Counter(
    'energy_ingest_consumer_errors_total',
    'accepted readings a consumer (rollups, alerts, latest) failed on, by consumer; the readings are stored all the same',
  );
  readonly sinkRowsInvalid = new Counter(
    'energy_ingest_sink_rows_invalid_total',
    "rows a server other than InfluxDB (VictoriaMetrics) answered 204 to but dropped, from its vm_rows_invalid_total (every writer's)",
  );
  readonly batchSize = new Histogram(
    'energy_ingest_batch_size_points',
    'points per sink write (splits and bisections included)',
    [1, 10, 100, 500, 1000, 2500, 5000, 10000],
  );
  readonly registry = new Registry();

  constructor() {
    // the process metrics carry the prefix too: every name this daemon exports starts with energy_ingest_
    collectDefaultMetrics({ register: this.registry, prefix: 'energy_ingest_' });
    // every counter and histogram declared above, in declaration order: no second list to keep
    for (const m of Object.values(this))
      if (m instanceof Counter || m instanceof Histogram) this.registry.registerMetric(m.prom() as never);
  }

  gauge(name: string, help: string, read: () => number): void {
    this.registry.registerMetric(new Sampled(name, help, read).prom() as never);
  }

  /** a counter kept by its owner (read at scrape time) */
  counter(name: string, help: string, read: () => number): void {
    this.registry.registerMetric(new Sampled(name, help, read, 'counter').prom() as never);
  }

  /** several series read at scrape time, each with its labels (a bounded set, e.g. per upstream connection) */
  sampledSeries(
    name: string,
    help: string,
    type: 'gauge' | 'counter',
    read: () => Array<{ labels: Record<string, string>; value: number }>,
  ): void {
    this.registry.registerMetric({
      name,
      reset: () => {},
      get: async () => ({ name, help, type, aggregator: 'sum', values: read() }),
    } as never);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}
