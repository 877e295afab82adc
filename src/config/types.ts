import type { AlertRule } from '../alerts/rules.js';
// The typed, frozen configuration every module receives. Built once by load.ts.

export interface BuildingMeta {
  readonly id: number;
  readonly key: string; // canonical building_NNN
  readonly name: string;
  readonly address: string;
}

export interface Config {
  readonly mqtt: {
    readonly host: string;
    readonly port: number;
    readonly maxPayloadBytes: number;
    readonly maxPacketBytes: number;
    readonly connectTimeoutMs: number;
    readonly maxConnections: number;
    readonly fdReserve: number;
    readonly connectRatePerIp: number;
    readonly maxClientIdBytes: number;
    readonly maxSubscriptionsPerClient: number;
    readonly maxMessagesPerSecond: number;
    readonly maxTopicLevels: number;
    readonly maxQueuedBytesPerClient: number;
    readonly maxOfflineMessagesPerSession: number;
    readonly maxOfflineBytesPerSession: number;
    readonly sessionExpirySeconds: number;
    readonly maxIdleSessions: number;
    readonly maxPersistentSessions: number;
    readonly maxRetainedMessages: number;
    readonly maxRetainedBytes: number;
    readonly maxRetainedPayloadBytes: number;
    readonly sensorsMayRetain: boolean;
    readonly maxPendingWebSocketConnections: number;
    readonly tls: {
      readonly port?: number;
      readonly cert?: string;
      readonly key?: string;
      readonly ca?: string;
    };
  };
  readonly http: {
    readonly host: string;
    readonly port: number;
    readonly tls: { readonly cert?: string; readonly key?: string };
    /** unset: loopback names plus the bind address, or any name on a wildcard bind (src/http/origin.ts) */
    readonly allowedHosts?: readonly string[];
    /** origins besides the daemon's own that may open the MQTT WebSocket */
    readonly allowedOrigins?: readonly string[];
  };
  readonly influx: {
    readonly url?: string;
    readonly api: 'auto' | 'v1' | 'v2';
    readonly token?: string;
    readonly org: string;
    readonly bucket: string;
    readonly database: string;
    readonly username?: string;
    readonly password?: string;
    readonly timeoutMs: number;
    /** 0: off */
    readonly invalidRowsCheckMs: number;
  };
  readonly redis: {
    readonly url?: string;
    readonly latestCache: boolean;
    readonly latestIntervalMs: number;
    readonly latestMaxPending: number;
  };
  readonly postgres: { readonly url?: string };
  readonly dataDir: string;
  /** pretty: undefined means "when stdout is a TTY" */
  readonly log: { readonly level: string; readonly pretty?: boolean };
  readonly auth: {
    readonly allowAnonymous: boolean;
    readonly allowAnonymousExplicit: boolean;
    readonly redisSessions: boolean;
    readonly maxFailedLoginsPerMinute: number;
    readonly maxFailedLoginsPerUserPerMinute: number;
    readonly failedLoginBurst: number;
    readonly maxTrackedLogins: number;
    readonly maxConcurrentKeyDerivations: number;
    readonly maxQueuedKeyDerivations: number;
  };
  readonly pipeline: {
    readonly batchSize: number;
    readonly flushIntervalMs: number;
    readonly maxInflightBatches: number;
    readonly maxLogBytes: number;
    readonly maxUnsentBytes: number;
    readonly maxLogBufferBytes: number;
    readonly gcAboveHeapBytes: number;
    readonly durability: 'fsync' | 'relaxed';
    readonly shutdownTimeoutMs: number;
    readonly retryMinMs: number;
    readonly retryMaxMs: number;
    readonly deadLetterMaxBytes: number;
    readonly deadLetterMaxFileBytes: number;
    readonly deadLetterMaxQueuedBytes: number;
    readonly probeIntervalMs: number;
  };
  readonly ingest: {
    readonly maxFutureSkewS: number;
    readonly maxAgeS: number;
    readonly acceptUnknownBuildings: boolean;
  };
  readonly metadata: { readonly refreshCron: string };
  readonly forecast: {
    readonly cron: string;
    readonly minHistoryHours: number;
    readonly historyHours: number;
    readonly backtestDays: number;
  };
  readonly rollups: { readonly flushIntervalMs: number };
  readonly alerts: {
    readonly locale: 'ko' | 'en';
    readonly maxQueued: number;
    readonly maxSeries: number;
    readonly maxActivePerBuilding: number;
    /** `alerts.rules`, validated; alert_rules rows win on the same id */
    readonly rules: readonly AlertRule[];
  };
  readonly buildings: readonly BuildingMeta[];
  /** Where the configuration came from, for `energy-ingest config` and logs. */
  readonly sources: readonly string[];
}
