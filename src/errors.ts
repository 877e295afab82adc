// One catalogue of coded errors (after Fastify's lib/errors.js): every error the
// daemon raises on purpose carries a stable code, so logs, tests and docs agree.
// tests/unit/docs.test.ts checks this list against docs/errors.md.

export const ERROR_CODES = {
  EI_CONFIG_INVALID: 'invalid configuration',
  EI_CONFIG_UNREADABLE: 'configuration file cannot be read',
  EI_CLI_USAGE: 'bad command line',
  EI_LISTEN_FAILED: 'a listener could not bind',
  EI_INFLUX_UNREACHABLE: 'InfluxDB did not answer',
  EI_INFLUX_BUCKET_MISSING: 'the configured InfluxDB v2 bucket does not exist',
  EI_INFLUX_AUTH: 'InfluxDB refused the credentials',
  EI_INFLUX_WRITE: 'InfluxDB refused a write',
  EI_POSTGRES_UNREACHABLE: 'PostgreSQL did not answer',
  EI_MIGRATION_FAILED: 'a schema migration failed and was rolled back',
  EI_DATA_DIR_UNSAFE: 'DATA_DIR, or a file in it, is unsafe: writable by others, foreign-owned or a link',
  EI_DATA_DIR_LOCKED: 'DATA_DIR is held by another running energy-ingest process (daemon.lock)',
  EI_DRAIN_INCOMPLETE: 'energy-ingest drain could not write every record of the log',
  EI_LOGIN_LOOKUP_UNAVAILABLE: 'a login could not be checked against PostgreSQL users',
  EI_BACKUP_FAILED: 'a part of a backup failed (the set is marked incomplete)',
  EI_BACKUP_CORRUPT:
    'a backup set failed verification (missing file, size or SHA-256 mismatch, bad manifest)',
  EI_RESTORE_FAILED: 'a part of a restore failed',
  EI_FORECAST_FAILED: 'an energy forecast run could not read the roll-ups or store its results',
  EI_CLUSTER_FRAME: 'a batch of messages from another node (over Redis) could not be decoded',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class IngestError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'IngestError';
    this.code = code;
  }
}
