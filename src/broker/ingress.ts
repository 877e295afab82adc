import type { Client } from 'aedes';
import type { Logger } from 'pino';
import type { ReadingConsumer } from '../ingest/consumer.js';
import type { KnownBuildings } from '../ingest/knownBuildings.js';
import { type BackslashMode, type NewlineMode, UnencodableError, writeLine } from '../ingest/lineProtocol.js';
import { type ParseLimits, parseMessage } from '../ingest/parse.js';
import type { Reading, Rejection } from '../ingest/reading.js';
import { isSensorTopic } from '../ingest/topic.js';
import type { RateLimitedLog } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { DeadLetterRecord } from '../pipeline/deadLetter.js';
import { type BodyEncoder, type DurableLog, endLine, LINE_FRAME, putHead } from '../pipeline/durableLog.js';
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

/**
 * One message's log record, written in place by DurableLog.appendEncoded: the
 * head (topic, client, the payload's own bytes) and one framed line per
 * accepted reading, each written straight into the log's chunk (issue 15: no
 * line strings, no LogRecord). Readings the sink could not store, or from
 * unknown buildings, are left out and listed in `rejections`. One instance is
 * reused for every message (encode is synchronous).
 */
class RecordEncoder implements BodyEncoder {
  estimate = 0;
  receivedAtMs = 0;
  readings: readonly Reading[] = [];
  /** the readings written, when some were refused; null: all of them */
  accepted: Reading[] | null = null;
  rejections: Rejection[] | null = null;
  lines = 0;
  /** where the framed lines start in buf */
  linesAt = 0;
  buf: Buffer | null = null;
  private msg: InboundPublish | null = null;
  private clientId: string | null = null;

  constructor(private readonly deps: IngressDeps) {}

  set(
    msg: InboundPublish,
    clientId: string | null,
    receivedAtMs: number,
    readings: readonly Reading[],
  ): void {
    this.msg = msg;
    this.clientId = clientId;
    this.receivedAtMs = receivedAtMs;
    this.readings = readings;
    this.lines = 0;
    this.accepted = this.rejections = null;
    // a line is about the payload's size plus its series key; measured lines are 120-200 bytes
    this.estimate = 64 + 3 * msg.topic.length + msg.payload.length + readings.length * 320;
  }

  encode(buf: Buffer, at: number, limit: number): number {
    const { deps } = this;
    const msg = this.msg!;
    const readings = this.readings;
    this.lines = 0;
    this.accepted = this.rejections = null;
    let p = putHead(buf, at, limit, this.receivedAtMs, msg.topic, this.clientId, msg.payload);
    if (p < 0) return -1;
    const countAt = p;
    p += 4;
    this.linesAt = p;
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
          const e = writeLine(buf, p + LINE_FRAME, limit, r, deps.backslashMode, deps.newlines, msg.payload);
          if (e < 0) return -1;
          p = endLine(buf, p, e);
          this.lines++;
        } catch (err) {
          if (!(err instanceof UnencodableError)) throw err;
          refused = { reason: 'sink_rejected', detail: err.message, payload: msg.payload };
        }
      }
      if (refused) {
        this.rejections ??= [];
        this.rejections.push(refused);
        this.accepted ??= readings.slice(0, i);
      } else if (this.accepted) this.accepted.push(r);
    }
    if (this.lines === 0) return at;
    buf.writeUInt32LE(this.lines, countAt);
    this.buf = buf;
    return p;
  }

  /** Classify without appending (the log is full): into a scratch buffer. */
  encodeAside(): void {
    for (let size = Math.max(4096, this.estimate); ; size *= 2) {
      if (this.encode(Buffer.allocUnsafe(size), 0, size) >= 0) return;
    }
  }
}

/** take(): wait for the log group of the record just appended (and nothing else) */
const DURABLE = Symbol('durable');
/** take(): a recorded QoS 0 publish with nothing to wait for but admission's gates (Admission.hold) */
const GATED = Symbol('gated');

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

  private readonly encoder: RecordEncoder;

  constructor(private readonly deps: IngressDeps) {
    this.now = deps.now ?? Date.now;
    this.consumers = deps.consumers ?? [];
    this.encoder = new RecordEncoder(deps);
  }

  /** undefined when nothing must be awaited (the hot path allocates no promise). */
  receive(msg: InboundPublish, clientId: string | null): Promise<unknown> | undefined {
    const r = this.take(msg, clientId);
    if (r === DURABLE) return this.deps.durableLog.lastDurable;
    if (r === GATED) return this.deps.admission!.gate();
    return r;
  }

  /**
   * receive(), but DURABLE for the usual QoS 1/2 publish: nothing to wait for
   * but the log group its record is in (authorizePublish then joins that
   * group's callback list: no promise reaction and closures per publish, which
   * lived until the fsync and were copied by the scavenges meanwhile).
   */
  private take(
    msg: InboundPublish,
    clientId: string | null,
  ): Promise<unknown> | undefined | typeof DURABLE | typeof GATED {
    if (!isSensorTopic(msg.topic)) return undefined;
    const { deps } = this;
    deps.metrics.messagesReceived.inc();
    const receivedAtMs = this.now();
    const parsed = parseMessage(msg.topic, msg.payload, receivedAtMs, deps.limits);
    let wait: Promise<unknown> | undefined;
    let enc: RecordEncoder | null = null;
    if (parsed.readings.length) {
      enc = this.encoder;
      enc.set(msg, clientId, receivedAtMs, parsed.readings);
      if (!deps.durableLog.full) {
        // the usual case: the record and its lines written straight into the log's chunk
        const durable = this.record(enc, msg.qos > 0);
        if (msg.qos > 0 && durable) {
          // nothing else to wait for (QoS 1/2: no admission gate; no rejection): the group's list
          if (!enc.rejections && !parsed.rejections.length) return DURABLE;
          wait = durable;
        }
      } else {
        // Budget full: the readings are classified (refused or not) in a scratch buffer first.
        enc.encodeAside();
        if (enc.lines === 0) {
          // every reading refused: only the dead letter below
        } else if (msg.qos === 0) {
          deps.metrics.qos0Dropped.inc(undefined, enc.lines);
        } else {
          // Hold the acknowledgement (Aedes stops reading this client) until segments are freed.
          deps.metrics.backpressureWaits.inc();
          const later = new RecordEncoder(deps);
          later.set(msg, clientId, receivedAtMs, parsed.readings);
          wait = deps.durableLog.waitForSpace().then(() => this.record(later, true));
        }
      }
    }
    const refused = enc?.rejections;
    if (msg.qos === 0 && enc !== null && enc.lines > 0 && deps.admission) {
      // Recorded already: only this publisher's next packets wait (Aedes stops reading its socket).
      // QoS 1/2 publishers are held by their acknowledgement (the log's fsync) and their
      // in-flight window; a slow sink is absorbed by the log for them, as in an outage.
      if (!wait && !refused && !parsed.rejections.length) return GATED; // Admission.hold decides
      const held = deps.admission.gate();
      if (held) wait = wait ? Promise.all([wait, held]) : held;
    }
    if (parsed.rejections.length || refused) {
      // allocated only when something is refused (parse results share one empty list)
      const rejections = refused ? [...parsed.rejections, ...refused] : [...parsed.rejections];
      const dead = this.reject(rejections, msg.topic, clientId, receivedAtMs);
      wait = wait ? Promise.all([wait, dead]) : dead;
    }
    return wait;
  }

  /** Append the encoder's record, hand its lines to the pipeline and its readings to the consumers. */
  private record(enc: RecordEncoder, sync: boolean): Promise<void> | undefined {
    const { deps } = this;
    const log = deps.durableLog;
    const start = log.appendEncoded(enc, sync);
    if (start < 0) return undefined; // every reading refused (a waiting QoS 1 message re-encoded)
    const end = log.endOffset;
    const durable = log.lastDurable;
    const receivedAtMs = enc.receivedAtMs;
    deps.metrics.readingsAccepted.inc(undefined, enc.lines);
    deps.pipeline.offerFramed(enc.buf!, enc.linesAt, enc.lines, receivedAtMs, start, end);
    const readings = enc.accepted ?? enc.readings;
    // here and nowhere else: the pipeline's replays and retries never reach the consumers
    for (const c of this.consumers) {
      try {
        c.consume(readings, receivedAtMs, end);
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
    return durable;
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
    const admission = this.deps.admission;
    const t0 = admission ? performance.now() : 0;
    let wait: Promise<unknown> | undefined | typeof DURABLE | typeof GATED;
    try {
      wait = this.take(packet, client?.id ?? null);
    } catch (err) {
      this.failed(packet, callback, err);
      return;
    }
    if (wait === GATED) {
      admission!.hold(callback, performance.now() - t0);
      return;
    }
    if (wait === DURABLE) {
      // its time counts in this turn; the acknowledgement itself is paced for free when it goes
      if (admission) admission.charge(performance.now() - t0);
      this.afterDurable(callback);
      return;
    }
    if (!admission) {
      if (!wait) callback(null);
      else
        wait.then(
          () => callback(null),
          (err: unknown) => this.failed(packet, callback, err),
        );
      return;
    }
    // On to Aedes: now, or paced to the next turn when this turn's ingestion time is spent (admission.ts).
    const cost = performance.now() - t0;
    // no closure for the usual QoS 0 publish: Aedes's callback itself is passed on
    if (!wait) admission.pace(callback, cost);
    else
      wait.then(
        () => admission.pace(callback, cost),
        (err: unknown) => this.failed(packet, callback, err),
      );
  };

  /** Acknowledgements waiting for the current log group, and the group they wait for. */
  private durableCallbacks: Array<(err: null) => void> = [];
  private durableGroup: Promise<void> | null = null;

  /**
   * Call `callback` once the record just appended is on disk: one list and one
   * reaction per log group (the group's promise never rejects: the log
   * retries every file error itself).
   */
  private afterDurable(callback: (err: null) => void): void {
    const group = this.deps.durableLog.lastDurable;
    if (group !== this.durableGroup) {
      const list: Array<(err: null) => void> = [];
      this.durableCallbacks = list;
      this.durableGroup = group;
      const admission = this.deps.admission;
      void group.then(() => {
        for (const cb of list) {
          if (admission) admission.pace(cb, 0);
          else cb(null);
        }
      });
    }
    this.durableCallbacks.push(callback);
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
