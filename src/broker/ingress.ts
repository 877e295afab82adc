import type { Client } from 'aedes';
import type { Logger } from 'pino';
import type { ReadingConsumer } from '../ingest/consumer.js';
import type { KnownBuildings } from '../ingest/knownBuildings.js';
import {
  type BackslashMode,
  encodeReading,
  type NewlineMode,
  UnencodableError,
} from '../ingest/lineProtocol.js';
import { type ParseLimits, parseMessage } from '../ingest/parse.js';
import type { Reading, Rejection } from '../ingest/reading.js';
import { isSensorTopic } from '../ingest/topic.js';
import type { RateLimitedLog } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { DeadLetterRecord } from '../pipeline/deadLetter.js';
import type { DurableLog, LogRecord } from '../pipeline/durableLog.js';
import type { Pipeline } from '../pipeline/pipeline.js';
import type { Admission } from './admission.js';

export interface IngressDeps {
  readonly limits: ParseLimits;
  readonly buildings: KnownBuildings;
  readonly backslashMode: BackslashMode;
  /** undefined: 'escape', no raw line break in any line */
  readonly newlines?: NewlineMode;
  readonly pipeline: Pipeline;
  readonly durableLog: DurableLog;
  /** what follows every accepted reading (roll-ups, alerts, latest readings), in order, each isolated */
  readonly consumers?: readonly ReadingConsumer[];
  readonly deadLetter: (r: DeadLetterRecord) => Promise<void>;
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly rejectLog: RateLimitedLog;
  readonly now?: () => number;
  /** holds publishers (TCP backpressure) while the daemon is behind; none: read at full speed */
  readonly admission?: Admission;
}

export interface InboundPublish {
  readonly topic: string;
  readonly payload: Buffer;
  readonly qos: 0 | 1 | 2;
}

/**
 * The one ingress point. The broker calls it from Aedes's authorizePublish
 * hook, i.e. before the QoS 1 PUBACK / QoS 2 PUBREC is written: whatever must
 * be safe before the publisher is acknowledged happens before the returned
 * promise settles: the accepted readings are in the durable log (fsync'd, or
 * written with durability: relaxed) and the rejected ones in the dead letter.
 * QoS 0 publishes have no acknowledgement: they are appended without waiting,
 * and dropped (counted) while the log's disk budget is full; the callback is
 * still held while the daemon is behind (admission.ts), so that publisher's
 * socket is read more slowly. Rejected readings
 * are acknowledged too, never errored: an error here would make Aedes drop the
 * client's connection, and the sensor would resend the bad message forever.
 */
export class Ingress {
  private readonly now: () => number;

  private readonly consumers: readonly ReadingConsumer[];

  constructor(private readonly deps: IngressDeps) {
    this.now = deps.now ?? Date.now;
    this.consumers = deps.consumers ?? [];
  }

  /** undefined when nothing must be awaited (the hot path allocates no promise). */
  receive(msg: InboundPublish, clientId: string | null): Promise<unknown> | undefined {
    if (!isSensorTopic(msg.topic)) return undefined;
    const { deps } = this;
    deps.metrics.messagesReceived.inc();
    const receivedAtMs = this.now();
    const parsed = parseMessage(msg.topic, msg.payload, receivedAtMs, deps.limits);
    const readings = parsed.readings;
    // allocated only when something is refused (parse results share one empty list)
    let rejections: Rejection[] | null = parsed.rejections.length ? [...parsed.rejections] : null;
    const lines: string[] = [];
    // the readings themselves while every one is accepted (the usual case): no second list
    let accepted: Reading[] | null = null;
    for (let i = 0; i < readings.length; i++) {
      const r = readings[i]!;
      let refused: Rejection | null = null;
      if (!deps.buildings.accepts(r.buildingId)) {
        refused = {
          reason: 'unknown_building',
          detail: `${r.building} is not a known building`,
          payload: msg.payload,
        };
      } else {
        try {
          lines.push(encodeReading(r, deps.backslashMode, deps.newlines));
        } catch (err) {
          if (!(err instanceof UnencodableError)) throw err;
          refused = { reason: 'sink_rejected', detail: err.message, payload: msg.payload };
        }
      }
      if (refused) {
        rejections ??= [];
        rejections.push(refused);
        accepted ??= readings.slice(0, i);
      } else if (accepted) accepted.push(r);
    }
    let wait: Promise<unknown> | undefined;
    if (lines.length) {
      // the log record: the message as text beside its lines, for dead-lettering a line the sink refuses
      const record: LogRecord = {
        topic: msg.topic,
        clientId,
        receivedAtMs,
        payload: parsed.text ?? '',
        lines,
      };
      if (!deps.durableLog.full) {
        const durable = this.record(record, accepted ?? readings, msg.qos > 0);
        if (msg.qos > 0) wait = durable;
      } else if (msg.qos === 0) {
        deps.metrics.qos0Dropped.inc(undefined, lines.length);
      } else {
        // Budget full: hold the acknowledgement (Aedes stops reading this client) until segments are freed.
        deps.metrics.backpressureWaits.inc();
        wait = deps.durableLog.waitForSpace().then(() => this.record(record, accepted ?? readings, true));
      }
    }
    if (msg.qos === 0 && lines.length && deps.admission) {
      // Recorded already: only this publisher's next packets wait (Aedes stops reading its socket).
      // QoS 1/2 publishers are held by their acknowledgement (the log's fsync) and their
      // in-flight window; a slow sink is absorbed by the log for them, as in an outage.
      const held = deps.admission.gate();
      if (held) wait = wait ? Promise.all([wait, held]) : held;
    }
    if (rejections) {
      const dead = this.reject(rejections, msg.topic, clientId, receivedAtMs);
      wait = wait ? Promise.all([wait, dead]) : dead;
    }
    return wait;
  }

  private record(record: LogRecord, readings: readonly Reading[], sync: boolean): Promise<void> {
    const { deps } = this;
    const appended = deps.durableLog.append(record, sync);
    deps.metrics.readingsAccepted.inc(undefined, record.lines.length);
    deps.pipeline.offer(record.lines, record.receivedAtMs, appended.start, appended.end);
    const receivedAtMs = record.receivedAtMs;
    // here and nowhere else: the pipeline's replays and retries never reach the consumers
    for (const c of this.consumers) {
      try {
        c.consume(readings, receivedAtMs, appended.end);
      } catch (err) {
        // the readings are in the log and the others must still see them: a consumer's
        // failure is its own, never the publisher's (no error to Aedes, no lost PUBACK)
        deps.metrics.consumerErrors.inc({ consumer: c.name });
        deps.rejectLog.warn(
          `consumer:${c.name}`,
          { consumer: c.name, err: (err as Error)?.message ?? String(err) },
          'a reading consumer failed; the readings are stored and the other consumers still got them',
        );
      }
    }
    return appended.durable;
  }

  private reject(
    rejections: Rejection[],
    topic: string,
    clientId: string | null,
    receivedAtMs: number,
  ): Promise<unknown> {
    const { deps } = this;
    return Promise.all(
      rejections.map((r) => {
        deps.metrics.messagesRejected.inc({ reason: r.reason });
        deps.rejectLog.warn(
          r.reason,
          { reason: r.reason, topic: topic.slice(0, 200), clientId },
          `rejected: ${r.detail}`,
        );
        return deps.deadLetter({
          receivedAtMs,
          clientId,
          topic,
          reason: r.reason,
          detail: r.detail,
          payload: r.payload,
        });
      }),
    );
  }

  /** Adapter for Aedes's authorizePublish(client, packet, callback). */
  authorizePublish = (
    client: Client | null,
    packet: InboundPublish,
    callback: (err?: Error | null) => void,
  ): void => {
    let wait: Promise<unknown> | undefined;
    try {
      wait = this.receive(packet, client?.id ?? null);
    } catch (err) {
      this.failed(packet, callback, err);
      return;
    }
    // no closure for the usual QoS 0 publish: Aedes's callback itself is passed on
    if (!wait) this.go(callback);
    else
      wait.then(
        () => this.go(callback),
        (err: unknown) => this.failed(packet, callback, err),
      );
  };

  /** On to Aedes: now, or paced to the next turn (admission.ts) when this turn's ingestion time is spent. */
  private go(callback: (err: null) => void): void {
    const admission = this.deps.admission;
    if (admission) admission.pace(callback);
    else callback(null);
  }

  /**
   * A failure here must not take the broker down, and must not acknowledge a
   * QoS 1/2 reading that may not be in the log: that client's connection is
   * closed instead (the error to Aedes), and it sends the message again.
   */
  private failed(packet: InboundPublish, callback: (err?: Error | null) => void, err: unknown): void {
    this.deps.log.error({ err, topic: packet.topic }, 'ingress failed on a message');
    callback(packet.qos > 0 ? (err instanceof Error ? err : new Error(String(err))) : null);
  }
}
