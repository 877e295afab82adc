import type { Reading } from './reading.js';

/**
 * Something that follows every accepted reading (roll-ups, alerts, the latest
 * readings): the ingress calls each, in its list, once the readings are in the
 * durable log. A consumer must not block; one that throws is counted
 * (energy_ingest_consumer_errors_total) and logged, and never stops the others
 * or changes what the publisher is told.
 */
export interface ReadingConsumer {
  readonly name: string;
  consume(readings: readonly Reading[], receivedAtMs: number, logEnd: number): void;
}
