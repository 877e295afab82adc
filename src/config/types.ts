import type { AlertRule } from '../alerts/rules.js';
import type { ConfigOf, SCHEMA } from './schema.js';
// The typed, frozen configuration every module receives. Built once by load.ts.

export interface BuildingMeta {
  readonly id: number;
  readonly key: string; // canonical building_NNN
  readonly name: string;
  readonly address: string;
}

type FromSchema = ConfigOf<typeof SCHEMA>;

/**
 * The configuration every module receives: the schema's keys with their types
 * (src/config/schema.ts, the one place a key is declared), plus what load.ts
 * computes or validates beyond single keys.
 */
export type Config = Omit<FromSchema, 'auth' | 'influx' | 'alerts' | 'cluster' | 'upstream'> & {
  /** protocolVersion is 4 (MQTT 3.1.1) or 5, checked by load.ts */
  readonly upstream: FromSchema['upstream'] & { readonly protocolVersion: 4 | 5 };
  /** nodeId defaults to the host name */
  readonly cluster: FromSchema['cluster'] & { readonly nodeId: string };
  readonly auth: FromSchema['auth'] & {
    /** decided by load.ts when unset: anonymous only in zero-config, loopback-only mode (contract section 9) */
    readonly allowAnonymous: boolean;
    /** allowAnonymous was set by the user, not decided by zero-config mode */
    readonly allowAnonymousExplicit: boolean;
  };
  /** database defaults to the bucket */
  readonly influx: FromSchema['influx'] & { readonly database: string };
  /** `alerts.rules`, validated; alert_rules rows win on the same id */
  readonly alerts: FromSchema['alerts'] & { readonly rules: readonly AlertRule[] };
  readonly buildings: readonly BuildingMeta[];
  /** Where the configuration came from, for `energy-ingest config` and logs. */
  readonly sources: readonly string[];
};
