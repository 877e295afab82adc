// The one configuration schema: default, description and env var per key.
// Env overrides are derived from this table (zigbee2mqtt's settings.schema.json
// habit), never read ad hoc elsewhere. Keys named by the contract keep the
// contract's env names; the others get EI_<PATH_IN_SNAKE_CASE>.

export type FieldKind = 'string' | 'int' | 'bool' | 'enum' | 'bytes' | 'url' | 'host' | 'list';

export interface Field {
  readonly kind: FieldKind;
  readonly description: string;
  /** undefined: the key is unset unless configured. (kind list: a comma-separated string) */
  readonly default?: string | number | boolean;
  /** an empty string is a value of its own (not "unset, take the default") */
  readonly allowEmpty?: boolean;
  readonly env?: string;
  readonly secret?: boolean;
  readonly values?: readonly string[];
  readonly min?: number;
  readonly max?: number;
}

// (generic so the derived Config type knows whether a port has a default)
const port = <D extends number | undefined>(description: string, def: D, env?: string) =>
  ({
    kind: 'int',
    description,
    ...(def === undefined ? {} : { default: def }),
    env,
    min: 0,
    max: 65535,
  }) as { kind: 'int'; description: string; env?: string; min: number; max: number } & (D extends number
    ? { default: D }
    : { default?: undefined });

export const SCHEMA = {
  mqtt: {
    host: { kind: 'host', description: 'MQTT TCP listener address', default: '127.0.0.1', env: 'MQTT_HOST' },
    port: port('MQTT TCP listener port (0 picks a free port)', 1883, 'MQTT_PORT'),
    enabled: {
      kind: 'bool',
      description:
        'run the embedded MQTT broker (TCP, TLS and WebSocket listeners); false: readings come only from upstream.url (bridge mode)',
      default: true,
    },
    maxConnections: {
      kind: 'int',
      description: 'connected MQTT clients at most; more get CONNACK 0x03',
      default: 10000,
      min: 1,
    },
    fdReserve: {
      kind: 'int',
      description:
        'file descriptors kept for the log, sinks, HTTP, pools and connections being refused: maxConnections is capped at the fd limit minus this (warned at start)',
      default: 256,
      min: 16,
      max: 1000000,
    },
    connectRatePerIp: {
      kind: 'int',
      description: 'new MQTT connections per source address per 10 s; more get CONNACK 0x03',
      default: 200,
      min: 1,
    },
    maxClientIdBytes: {
      kind: 'int',
      description: 'longer client ids get CONNACK 0x02',
      default: 256,
      min: 1,
      max: 65535,
    },
    maxMessagesPerSecond: {
      kind: 'int',
      description: 'publishes per second per client; faster clients are slowed down (never dropped)',
      default: 20000,
      min: 1,
    },
    maxSubscriptionsPerClient: {
      kind: 'int',
      description: 'further filters get SUBACK 0x80',
      default: 100,
      min: 1,
    },
    maxTopicLevels: {
      kind: 'int',
      description: 'deeper topics close the connection',
      default: 16,
      min: 5,
      max: 100,
    },
    connectTimeoutMs: {
      kind: 'int',
      description: 'a connection that has not completed CONNECT by then is closed',
      default: 30000,
      min: 100,
      max: 600000,
    },
    maxPacketBytes: {
      kind: 'bytes',
      description: 'larger MQTT packets close the connection (must exceed maxPayloadBytes)',
      default: 1024 * 1024,
      min: 1024,
      max: 256 * 1024 * 1024,
    },
    maxPayloadBytes: {
      kind: 'bytes',
      description: 'larger publishes to sensors/ are rejected as payload_too_large',
      default: 65536,
      min: 16,
      max: 16 * 1024 * 1024,
    },
    maxQueuedBytesPerClient: {
      kind: 'bytes',
      description: 'bytes waiting to be sent to one client; beyond it the client is disconnected',
      default: 8 * 1024 * 1024,
      min: 64 * 1024,
    },
    maxOfflineMessagesPerSession: {
      kind: 'int',
      description: 'QoS 1/2 messages queued per persistent session (clean session 0); the oldest are dropped',
      default: 1000,
      min: 1,
    },
    maxOfflineBytesPerSession: {
      kind: 'bytes',
      description: 'bytes (topic + payload) queued per persistent session; the oldest are dropped',
      default: 1024 * 1024,
      min: 1024,
    },
    sessionExpirySeconds: {
      kind: 'int',
      description: 'a persistent session disconnected this long is removed with its subscriptions and queue',
      default: 86400,
      min: 1,
    },
    maxIdleSessions: {
      kind: 'int',
      description:
        'disconnected persistent sessions kept (with any subscriptions, queue, QoS 2 state); beyond, the longest idle is removed',
      default: 10000,
      min: 1,
    },
    maxPersistentSessions: {
      kind: 'int',
      description:
        'persistent sessions (clean session 0) holding subscriptions; a further one gets SUBACK 0x80',
      default: 100,
      min: 1,
    },
    maxRetainedMessages: {
      kind: 'int',
      description: 'retained messages stored (daemon alerts not counted); beyond it a retain is not stored',
      default: 10000,
      min: 1,
    },
    maxRetainedBytes: {
      kind: 'bytes',
      description:
        'bytes of retained messages stored (daemon alerts not counted); beyond it a retain is not stored',
      default: 16 * 1024 * 1024,
      min: 1024,
    },
    maxRetainedPayloadBytes: {
      kind: 'bytes',
      description: 'largest retained payload outside sensors/ (on sensors/: mqtt.maxPayloadBytes)',
      default: 65536,
      min: 16,
    },
    sensorsMayRetain: {
      kind: 'bool',
      description: 'store retained messages of role sensor (otherwise ingested and relayed, not retained)',
      default: false,
    },
    maxPendingWebSocketConnections: {
      kind: 'int',
      description: 'WebSocket connections without CONNACK yet; more are refused with HTTP 503',
      default: 100,
      min: 1,
    },
    tls: {
      port: port('MQTT over TLS listener port; TLS is off while unset', undefined, 'MQTT_TLS_PORT'),
      cert: {
        kind: 'string',
        description: 'PEM certificate file for the TLS listener',
        env: 'MQTT_TLS_CERT',
      },
      key: {
        kind: 'string',
        description: 'PEM private key file for the TLS listener',
        env: 'MQTT_TLS_KEY',
        secret: true,
      },
      ca: { kind: 'string', description: 'PEM CA file to verify client certificates', env: 'MQTT_TLS_CA' },
      maxPendingHandshakes: {
        kind: 'int',
        description:
          'TLS handshakes in progress at most (never more than half of maxConnections; they count against it); more connections are closed at accept',
        default: 100,
        min: 1,
      },
      maxPendingHandshakesPerIp: {
        kind: 'int',
        description: 'TLS handshakes in progress at most from one address; more are closed at accept',
        default: 20,
        min: 1,
      },
    },
  },
  http: {
    host: {
      kind: 'host',
      description: 'HTTP (health, metrics, WebSocket /mqtt) address',
      default: '127.0.0.1',
      env: 'HTTP_HOST',
    },
    port: port('HTTP port (0 picks a free port)', 8080, 'HTTP_PORT'),
    tls: {
      cert: { kind: 'string', description: 'PEM certificate: serve HTTPS and WSS instead of HTTP and WS' },
      key: { kind: 'string', description: 'PEM private key for http.tls.cert', secret: true },
    },
    allowedHosts: {
      kind: 'list',
      description:
        'Host names HTTP answers for (names, addresses, "*.domain", "*"; others get 421, /health excepted); unset: localhost, 127.0.0.1, [::1] and http.host, or any name when http.host is 0.0.0.0 or ::',
    },
    allowedOrigins: {
      kind: 'list',
      description:
        'browser origins besides the daemon\'s own that may open the MQTT WebSocket (e.g. https://grafana.example; "*" for any); others get 403. Clients without an Origin (non-browsers) always may',
    },
  },
  upstream: {
    url: {
      kind: 'url',
      description:
        'bridge mode: an existing MQTT broker to ingest from (mqtt:// or mqtts://); unset: no upstream input. user:password@ in it is taken out into upstream.username/password (explicit ones win)',
      env: 'UPSTREAM_MQTT_URL',
    },
    topics: {
      kind: 'list',
      description: 'topic filters subscribed upstream (QoS 1); only sensors/… topics are ingested',
      default: 'sensors/#',
    },
    shareGroup: {
      kind: 'string',
      allowEmpty: true,
      description:
        'shared-subscription group: subscribes $share/{group}/{filter} so several nodes split the stream; "" subscribes the plain filters',
      default: 'energy-ingest',
    },
    clientId: {
      kind: 'string',
      description:
        'client id of the upstream connections, stable across restarts (persistent session); default energy-ingest-{cluster.nodeId or host name}, with -{n} appended for each of several connections',
    },
    username: { kind: 'string', description: 'upstream broker user', env: 'UPSTREAM_MQTT_USERNAME' },
    password: {
      kind: 'string',
      description: 'upstream broker password',
      env: 'UPSTREAM_MQTT_PASSWORD',
      secret: true,
    },
    protocolVersion: {
      kind: 'int',
      description: 'MQTT protocol of the upstream connections: 4 (3.1.1) or 5',
      default: 5,
      min: 4,
      max: 5,
    },
    connections: {
      kind: 'int',
      description:
        'parallel subscriber connections to the upstream broker (one durable log, one group commit)',
      default: 2,
      min: 1,
      max: 64,
    },
    maxInflight: {
      kind: 'int',
      description:
        'messages per connection received and not yet acknowledged (waiting for the log fsync); at it that connection is not read (TCP backpressure). MQTT 5: also sent as Receive Maximum',
      default: 100,
      min: 1,
      max: 65535,
    },
    sessionExpirySeconds: {
      kind: 'int',
      description:
        'MQTT 5 session expiry asked of the upstream broker: how long it keeps our subscriptions and queued messages while we are away (3.1.1: the broker decides)',
      default: 86400,
      min: 60,
      max: 4294967295,
    },
    reconnectMinMs: {
      kind: 'int',
      description:
        'reconnect delay to the upstream broker for the first 10 attempts (a restarting broker is caught quickly), then doubling up to reconnectMaxMs; with jitter',
      default: 200,
      min: 10,
      max: 600000,
    },
    reconnectMaxMs: {
      kind: 'int',
      description: 'largest reconnect delay to the upstream broker',
      default: 30000,
      min: 10,
      max: 600000,
    },
    publishAlerts: {
      kind: 'bool',
      description:
        'also publish alert events (alerts/…, retained as on the embedded broker) to the upstream broker',
      default: true,
    },
    tls: {
      ca: { kind: 'string', description: 'PEM CA file to verify the upstream broker (mqtts://)' },
      cert: { kind: 'string', description: 'PEM client certificate for the upstream broker' },
      key: { kind: 'string', description: 'PEM private key of upstream.tls.cert', secret: true },
    },
  },
  influx: {
    url: {
      kind: 'url',
      description:
        'InfluxDB base URL; unset writes line protocol files under dataDir/readings. user:password@ (or ?u=&p=) in it is taken out into influx.username/password (v1 Basic auth; explicit ones win)',
      env: 'INFLUX_URL',
    },
    api: {
      kind: 'enum',
      values: ['auto', 'v1', 'v2'],
      description: 'write API; auto probes /ping',
      default: 'auto',
      env: 'INFLUX_API',
    },
    token: { kind: 'string', description: 'InfluxDB v2 API token', env: 'INFLUX_TOKEN', secret: true },
    org: {
      kind: 'string',
      description: 'InfluxDB v2 organisation',
      default: 'energy_org',
      env: 'INFLUX_ORG',
    },
    bucket: {
      kind: 'string',
      description: 'InfluxDB v2 bucket',
      default: 'energy_data',
      env: 'INFLUX_BUCKET',
    },
    database: {
      kind: 'string',
      description: 'InfluxDB v1 database (default: the bucket name)',
      env: 'INFLUX_DATABASE',
    },
    username: { kind: 'string', description: 'InfluxDB v1 user', env: 'INFLUX_USERNAME' },
    password: { kind: 'string', description: 'InfluxDB v1 password', env: 'INFLUX_PASSWORD', secret: true },
    timeoutMs: {
      kind: 'int',
      description: 'per-request timeout for InfluxDB',
      default: 10000,
      min: 100,
      max: 600000,
    },
    invalidRowsCheckMs: {
      kind: 'int',
      description:
        'how often to read vm_rows_invalid_total from a server that is not InfluxDB (VictoriaMetrics drops unparsable rows with a 204) into energy_ingest_sink_rows_invalid_total; 0 turns it off',
      default: 15000,
      min: 0,
      max: 3600000,
    },
  },
  redis: {
    url: { kind: 'url', description: 'Redis URL; unset: no Redis outputs', env: 'REDIS_URL', secret: true },
    latestCache: {
      kind: 'bool',
      description:
        'keep the newest reading per series in Redis hashes cache:latest:{building_id} (contract section 16)',
      default: true,
    },
    latestIntervalMs: {
      kind: 'int',
      description:
        'cache:latest:* is written at most once per this interval per building (coalesced, pipelined)',
      default: 1000,
      min: 50,
      max: 3600000,
    },
    latestMaxPending: {
      kind: 'int',
      description:
        'series waiting for the next cache:latest:* write (all buildings); readings of new series beyond are not cached (counted)',
      default: 100000,
      min: 1,
      max: 100000000,
    },
  },
  postgres: {
    url: {
      kind: 'url',
      description: 'PostgreSQL URL; unset: metadata from `buildings:` in this file',
      env: 'DATABASE_URL',
      secret: true,
    },
  },
  dataDir: {
    kind: 'string',
    description: 'directory for the file sink, dead letters and the durable log',
    default: './data',
    env: 'DATA_DIR',
  },
  log: {
    level: {
      kind: 'enum',
      values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
      description: 'pino log level (JSON to stdout)',
      default: 'info',
      env: 'LOG_LEVEL',
    },
    pretty: {
      kind: 'bool',
      description: 'human-readable log lines instead of JSON; default: when stdout is a terminal',
    },
  },
  auth: {
    allowAnonymous: {
      kind: 'bool',
      description: 'anonymous MQTT clients; default true only while every listener is on loopback',
      env: 'ALLOW_ANONYMOUS',
    },
    redisSessions: {
      kind: 'bool',
      description: 'also accept user name "session" with a Redis session id (session:{id}) as password',
      default: false,
    },
    maxFailedLoginsPerMinute: {
      kind: 'int',
      description:
        'failed logins (MQTT and HTTP Basic) per source address per minute, after a burst of auth.failedLoginBurst; further logins get CONNACK 0x03 / HTTP 429 with Retry-After, except credentials that logged in before',
      default: 10,
      min: 1,
    },
    maxFailedLoginsPerUserPerMinute: {
      kind: 'int',
      description:
        'failed logins per user name per minute (from any address), after the same burst; beyond: as above',
      default: 10,
      min: 1,
    },
    failedLoginBurst: {
      kind: 'int',
      description:
        'failed logins allowed at once per address and per user name before the per-minute rates apply',
      default: 3,
      min: 1,
      max: 1000,
    },
    maxTrackedLogins: {
      kind: 'int',
      description:
        'addresses, user names and successful logins remembered for the limits above (each); the oldest is forgotten first',
      default: 100000,
      min: 100,
    },
    maxConcurrentKeyDerivations: {
      kind: 'int',
      description:
        "password hashes (scrypt/pbkdf2) computed at once: each takes a core and a thread of libuv's pool, which the durable log's writes and fsyncs need",
      default: 1,
      min: 1,
      max: 64,
    },
    recheckIntervalSeconds: {
      kind: 'int',
      description:
        'how often connected users-table and Redis-session logins are checked again (also on every metadata change, and a session at its expires_at); a deleted user, changed password or ended session is disconnected, a changed role applies at once',
      default: 30,
      min: 1,
      max: 86400,
    },
    maxQueuedKeyDerivations: {
      kind: 'int',
      description: 'logins waiting for a key derivation; more get CONNACK 0x03 / HTTP 503',
      default: 8,
      min: 0,
      max: 10000,
    },
    loginLookupPoolSize: {
      kind: 'int',
      description:
        'PostgreSQL connections for `users` look-ups at login, a pool apart from the metadata one (so logins cannot starve metadata reloads)',
      default: 2,
      min: 1,
      max: 100,
    },
    loginLookupTimeoutMs: {
      kind: 'int',
      description:
        'longest a `users` (PostgreSQL) or session (Redis) look-up may take at login; then CONNACK 0x03 / HTTP 503',
      default: 2000,
      min: 100,
      max: 60000,
    },
    loginLookupMaxWaiting: {
      kind: 'int',
      description:
        'logins waiting for a connection of the login pool; more get CONNACK 0x03 / HTTP 503 at once',
      default: 16,
      min: 0,
      max: 10000,
    },
    unknownUserCacheMs: {
      kind: 'int',
      description:
        'how long a user name found in neither `mqtt_devices` nor `users` is remembered as unknown (not looked up again); 0: not remembered',
      default: 30000,
      min: 0,
      max: 3600000,
    },
    unknownUserCacheMax: {
      kind: 'int',
      description: 'unknown user names remembered at most; the oldest is forgotten first',
      default: 10000,
      min: 0,
      max: 1000000,
    },
  },
  pipeline: {
    batchSize: { kind: 'int', description: 'points per InfluxDB write', default: 5000, min: 1, max: 1000000 },
    flushIntervalMs: {
      kind: 'int',
      description: 'longest a point waits for its batch to fill',
      default: 1000,
      min: 1,
      max: 600000,
    },
    maxInflightBatches: {
      kind: 'int',
      description: 'concurrent writes to the sink',
      default: 4,
      min: 1,
      max: 64,
    },
    maxLogBytes: {
      kind: 'bytes',
      description: 'disk budget of the durable log; full → publishers are paused',
      default: 1024 ** 3,
      min: 1024 * 1024,
    },
    maxUnsentBytes: {
      kind: 'bytes',
      description:
        'while the sink is writing, QoS 0 publishers are read more slowly (TCP backpressure) once this much of the log waits for it; in an outage the log takes up to maxLogBytes',
      default: 32 * 1024 ** 2,
      min: 1024 * 1024,
    },
    maxLogBufferBytes: {
      kind: 'bytes',
      description:
        'log records held in memory before they are written; beyond it publishers are read more slowly',
      default: 8 * 1024 ** 2,
      min: 64 * 1024,
    },
    gcAboveHeapBytes: {
      kind: 'bytes',
      description:
        'heap in use beyond which a full garbage collection is requested (at most twice a second), so RSS tracks what is live',
      default: 64 * 1024 ** 2,
      min: 16 * 1024 * 1024,
    },
    durability: {
      kind: 'enum',
      values: ['fsync', 'relaxed'],
      description: 'fsync before PUBACK, or write only',
      default: 'fsync',
    },
    shutdownTimeoutMs: {
      kind: 'int',
      description: 'longest a SIGTERM flush may take',
      default: 10000,
      min: 0,
      max: 600000,
    },
    retryMinMs: {
      kind: 'int',
      description: 'first sink write retry delay (backoff doubles from here, with jitter)',
      default: 1000,
      min: 1,
      max: 600000,
    },
    deadLetterMaxBytes: {
      kind: 'bytes',
      description:
        'disk budget of DATA_DIR/deadletter; earlier days deleted first, then new records dropped (counted)',
      default: 100 * 1024 ** 2,
      min: 1024 * 1024,
    },
    deadLetterMaxFileBytes: {
      kind: 'bytes',
      description: 'a dead-letter day file is rotated to YYYY-MM-DD.N.jsonl past this size',
      default: 16 * 1024 ** 2,
      min: 64 * 1024,
    },
    deadLetterMaxQueuedBytes: {
      kind: 'bytes',
      description: 'dead-letter records waiting to be written; beyond it rejections are dropped (counted)',
      default: 8 * 1024 ** 2,
      min: 256 * 1024,
    },
    retryMaxMs: {
      kind: 'int',
      description: 'largest sink write retry delay',
      default: 30000,
      min: 1,
      max: 3600000,
    },
    probeIntervalMs: {
      kind: 'int',
      description:
        'while sink writes fail, ping the sink this often; when it answers again, sleeping retries resume at once',
      default: 2000,
      min: 100,
      max: 60000,
    },
  },
  ingest: {
    maxFutureSkewS: {
      kind: 'int',
      description: 'readings further in the future are rejected',
      default: 300,
      min: 0,
    },
    maxAgeS: { kind: 'int', description: 'older readings are rejected', default: 604800, min: 1 },
    acceptUnknownBuildings: {
      kind: 'bool',
      description: 'accept buildings missing from the metadata',
      default: false,
    },
  },
  metadata: {
    refreshCron: {
      kind: 'string',
      description: 'node-cron schedule of the metadata reload',
      default: '*/5 * * * *',
    },
    minReloadIntervalMs: {
      kind: 'int',
      description:
        'reloads on NOTIFY start at least this far apart; notifications meanwhile are coalesced into one pending reload (energy_ingest_metadata_reload_requests_coalesced_total)',
      default: 1000,
      min: 0,
      max: 600000,
    },
    reloadRetryMinMs: {
      kind: 'int',
      description:
        'a failed metadata reload is retried after this (±25% jitter), doubling per failure up to metadata.reloadRetryMaxMs (energy_ingest_metadata_reload_failures_total)',
      default: 1000,
      min: 10,
      max: 600000,
    },
    reloadRetryMaxMs: {
      kind: 'int',
      description: 'longest wait between retries of a failing metadata reload',
      default: 30000,
      min: 10,
      max: 3600000,
    },
  },
  forecast: {
    cron: {
      kind: 'string',
      description:
        'node-cron schedule of the energy forecasts (contract section 17; runs only with both DATABASE_URL and REDIS_URL)',
      default: '7 * * * *',
    },
    minHistoryHours: {
      kind: 'int',
      description: 'buildings with fewer hours of power roll-ups are skipped (listed in the summary)',
      default: 168,
      min: 48,
      max: 8760,
    },
    historyHours: {
      kind: 'int',
      description: 'hours of roll-ups read per building (the model weights recent weeks more)',
      default: 672,
      min: 48,
      max: 8760,
    },
    backtestDays: {
      kind: 'int',
      description: 'held-out days of the rolling backtest (fewer when the history is short)',
      default: 7,
      min: 1,
      max: 60,
    },
  },
  rollups: {
    flushIntervalMs: {
      kind: 'int',
      description: 'how often hourly roll-ups are merged into PostgreSQL (also at shutdown)',
      default: 60000,
      min: 100,
      max: 3600000,
    },
  },
  cluster: {
    mode: {
      kind: 'enum',
      values: ['standalone', 'redis'],
      description:
        'standalone: one node; redis: every node with the same REDIS_URL, InfluxDB and PostgreSQL is one system (contract section 14)',
      default: 'standalone',
      env: 'CLUSTER_MODE',
    },
    nodeId: {
      kind: 'string',
      description: "this node's name in the cluster, unique per node; unset: the host name",
      env: 'CLUSTER_NODE_ID',
    },
    heartbeatIntervalMs: {
      kind: 'int',
      description:
        "redis mode: how often a node refreshes its registry entry and subscription filters in Redis (both expire after 15 s) and re-reads the other nodes' filters",
      default: 5000,
      min: 200,
      max: 5000,
    },
    maxQueuedBytes: {
      kind: 'bytes',
      description:
        'redis mode: bytes of messages waiting to cross to other nodes (queued or in flight to Redis); beyond it new ones are dropped (energy_ingest_cluster_dropped_total{reason="queue_full"}); the same bound again for messages from other nodes waiting for local delivery ({reason="inbound_full"})',
      default: 16 * 1024 * 1024,
      min: 64 * 1024,
      max: 1024 * 1024 * 1024,
    },
  },
  s3: {
    endpoint: {
      kind: 'url',
      description:
        'S3 API endpoint for s3:// backup targets (MinIO: http://minio:9000); unset: the AWS endpoint of s3.region. Path-style addressing',
      env: 'S3_ENDPOINT',
    },
    accessKey: { kind: 'string', description: 'S3 access key id', env: 'S3_ACCESS_KEY' },
    secretKey: { kind: 'string', description: 'S3 secret access key', env: 'S3_SECRET_KEY', secret: true },
    region: { kind: 'string', description: 'S3 region', default: 'us-east-1', env: 'S3_REGION' },
  },
  backup: {
    cron: {
      kind: 'string',
      description: 'node-cron schedule of backups inside the daemon (to backup.to); unset: none',
    },
    to: {
      kind: 'string',
      description: 'where scheduled backups go: a directory or s3://BUCKET/PREFIX (needed by backup.cron)',
    },
    keep: {
      kind: 'int',
      description: 'backup sets kept at the target after each backup; older ones are deleted',
      default: 7,
      min: 1,
      max: 100000,
    },
  },
  alerts: {
    locale: { kind: 'enum', values: ['ko', 'en'], description: 'language of alert messages', default: 'ko' },
    maxQueued: {
      kind: 'int',
      description:
        'alert events held for Redis while it is down or slow; beyond it the oldest are dropped (counted)',
      default: 100000,
      min: 100,
      max: 10000000,
    },
    maxSeries: {
      kind: 'int',
      description:
        'series (building/floor/room/type) tracked by the alert evaluator, the latest readings and the roll-up rows; new ones beyond are not tracked (counted)',
      default: 100000,
      min: 1,
      max: 100000000,
    },
    maxActivePerBuilding: {
      kind: 'int',
      description: 'active alerts per building; further alerts are not raised (counted)',
      default: 1000,
      min: 1,
      max: 10000000,
    },
    clusterMaxPending: {
      kind: 'int',
      description:
        'cluster mode: readings of one series held for alert evaluation while the node claims the series in Redis (one round trip); beyond it they are not evaluated (counted)',
      default: 64,
      min: 1,
      max: 100000,
    },
  },
} as const satisfies SchemaNode;

export interface SchemaNode {
  readonly [key: string]: Field | SchemaNode;
}

export function isField(node: Field | SchemaNode): node is Field {
  return typeof (node as Field).kind === 'string' && typeof (node as Field).description === 'string';
}

/** Every leaf with its dotted path, in schema order. */
export function* fields(node: SchemaNode = SCHEMA, prefix = ''): Generator<[string, Field]> {
  for (const [key, child] of Object.entries(node)) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (isField(child)) yield [path, child];
    else yield* fields(child, path);
  }
}

export function envName(path: string, field: Field): string {
  return (
    field.env ??
    `EI_${path
      .replace(/\./g, '_')
      .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
      .toUpperCase()}`
  );
}

/** The value type of a field: numbers for int and bytes (parsed), the listed strings for enums. */
type FieldValue<F> = F extends { kind: 'int' | 'bytes' }
  ? number
  : F extends { kind: 'bool' }
    ? boolean
    : F extends { kind: 'enum'; values: readonly (infer V)[] }
      ? V
      : F extends { kind: 'list' }
        ? readonly string[]
        : string;

type HasDefault<F> = F extends { default: string | number | boolean } ? true : false;

/**
 * The typed configuration of a schema node, derived from the schema itself so
 * a key is declared once: a field with a default is always set, one without
 * may be undefined.
 */
export type ConfigOf<N> = {
  readonly [K in keyof N as N[K] extends Field
    ? HasDefault<N[K]> extends true
      ? K
      : never
    : K]: N[K] extends Field ? FieldValue<N[K]> : ConfigOf<N[K]>;
} & {
  readonly [K in keyof N as N[K] extends Field
    ? HasDefault<N[K]> extends true
      ? never
      : K
    : never]?: N[K] extends Field ? FieldValue<N[K]> : never;
};
