import { IngestError } from '../errors.js';

// What crosses Redis between nodes: one PUBLISH carries a batch of MQTT
// messages for one node (or, for retained ones, for every node). Binary, so a
// payload crosses byte for byte and nothing is escaped per message:
//
//   batch   = [u8 version=1][u8 originLength][origin utf8] message*
//   message = [u8 flags: qos in bits 0-1, retain in bit 2][u16 topicLength][topic utf8][u32 payloadLength][payload]
//
// The origin lets a node ignore its own broadcasts (retained messages).

export const FRAME_VERSION = 1;

export interface ClusterMessage {
  readonly topic: string;
  readonly payload: Buffer;
  readonly qos: 0 | 1 | 2;
  readonly retain: boolean;
}

export function batchHeader(origin: string): Buffer {
  const o = Buffer.from(origin, 'utf8');
  return Buffer.concat([Buffer.from([FRAME_VERSION, o.length]), o]);
}

export function encodeMessage(m: ClusterMessage): Buffer {
  const topicLength = Buffer.byteLength(m.topic, 'utf8');
  const buf = Buffer.allocUnsafe(1 + 2 + topicLength + 4 + m.payload.length);
  buf[0] = (m.qos & 3) | (m.retain ? 4 : 0);
  buf.writeUInt16BE(topicLength, 1);
  buf.write(m.topic, 3, 'utf8');
  buf.writeUInt32BE(m.payload.length, 3 + topicLength);
  m.payload.copy(buf, 7 + topicLength);
  return buf;
}

/**
 * A batch for one node, written message by message into one growing buffer:
 * no buffer per message and no concatenation at the flush (the sender's cost
 * per forwarded message is its copy into this buffer).
 */
export class BatchWriter {
  private buf: Buffer;
  private length: number;
  /** messages written */
  count = 0;

  // below 4 KiB Buffer.allocUnsafe takes from the shared pool: a small batch costs no allocation of its own
  constructor(header: Buffer, capacity = 4000) {
    this.buf = Buffer.allocUnsafe(Math.max(capacity, header.length * 2));
    header.copy(this.buf, 0);
    this.length = header.length;
  }

  /** bytes written (the header included) */
  get bytes(): number {
    return this.length;
  }

  add(topic: string, payload: Buffer, qos: number, retain: boolean): void {
    const topicLength = Buffer.byteLength(topic, 'utf8');
    const need = this.length + 7 + topicLength + payload.length;
    if (need > this.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, this.buf.length * 2));
      this.buf.copy(grown, 0, 0, this.length);
      this.buf = grown;
    }
    const b = this.buf;
    let at = this.length;
    b[at] = (qos & 3) | (retain ? 4 : 0);
    b.writeUInt16BE(topicLength, at + 1);
    at += 3;
    at += b.write(topic, at, 'utf8');
    b.writeUInt32BE(payload.length, at);
    at += 4;
    payload.copy(b, at);
    this.length = at + payload.length;
    this.count++;
  }

  /** the batch (a view: the writer is not used again) */
  finish(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

export class FrameError extends IngestError {
  constructor(message: string) {
    super('EI_CLUSTER_FRAME', message);
  }
}

/**
 * A batch's origin and messages; throws FrameError on anything malformed.
 * Payloads are views of `buf` (no copy per message): whoever keeps one beyond
 * the delivery (a retained message) copies it.
 */
export function decodeBatch(buf: Buffer): { origin: string; messages: ClusterMessage[] } {
  if (buf.length < 2 || buf[0] !== FRAME_VERSION) throw new FrameError('unknown cluster frame version');
  const originLength = buf[1]!;
  let at = 2 + originLength;
  if (at > buf.length) throw new FrameError('truncated cluster frame');
  const origin = buf.toString('utf8', 2, at);
  const messages: ClusterMessage[] = [];
  while (at < buf.length) {
    if (at + 3 > buf.length) throw new FrameError('truncated cluster frame');
    const flags = buf[at]!;
    const topicLength = buf.readUInt16BE(at + 1);
    const topicEnd = at + 3 + topicLength;
    if (topicEnd + 4 > buf.length) throw new FrameError('truncated cluster frame');
    const topic = buf.toString('utf8', at + 3, topicEnd);
    const payloadLength = buf.readUInt32BE(topicEnd);
    const end = topicEnd + 4 + payloadLength;
    if (end > buf.length) throw new FrameError('truncated cluster frame');
    const qos = flags & 3;
    if (qos > 2) throw new FrameError('bad QoS in cluster frame');
    messages.push({
      topic,
      payload: buf.subarray(topicEnd + 4, end),
      qos: qos as 0 | 1 | 2,
      retain: (flags & 4) !== 0,
    });
    at = end;
  }
  return { origin, messages };
}

/** a retained message as stored in the cluster:retained hash (field = topic): [u8 qos][payload] */
export function encodeRetained(qos: number, payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from([qos & 3]), payload]);
}

export function decodeRetained(value: Buffer): { qos: 0 | 1 | 2; payload: Buffer } | null {
  if (value.length < 1 || value[0]! > 2) return null;
  return { qos: value[0] as 0 | 1 | 2, payload: Buffer.from(value.subarray(1)) };
}
