// The shape everything downstream of ingest works with, and the rejection
// reasons of contract section 6.

export type ExtraValue = number | string | boolean;

export interface Reading {
  readonly buildingId: number;
  /** canonical building_NNN key, stored as the building_id tag */
  readonly building: string;
  readonly floor: string;
  readonly room: string;
  readonly sensorType: string;
  readonly value: number;
  readonly unit: string;
  readonly status: string;
  /** extra payload keys, in payload order */
  readonly extra: ReadonlyArray<readonly [string, ExtraValue]>;
  /** epoch milliseconds; the receipt time when the payload had none */
  readonly timestampMs: number;
  /**
   * The series' escaped line-protocol key per backslash mode, shared by every
   * reading of the same topic (filled by ingest/lineProtocol.ts on first use),
   * so the per-reading path neither builds nor hashes a series id.
   */
  readonly lpKeys?: LpKeys;
  /**
   * Where the value is written in the message's payload, when those bytes are
   * exactly String(value) (the parser's fast path): the line protocol copies
   * them instead of formatting the double again. -1 (or absent): not known.
   */
  readonly valueAt?: number;
  readonly valueEnd?: number;
}

export interface LpKeys {
  escape?: string;
  literal?: string;
  /** the last unit seen on this topic, quoted for `unitNewlines` (sensors repeat theirs) */
  unitText?: string;
  unitNewlines?: string;
  unitQuoted?: string;
}

export const REJECT_REASONS = [
  'bad_topic',
  'bad_json',
  'bad_value',
  'bad_timestamp',
  'timestamp_out_of_range',
  'unknown_building',
  'payload_too_large',
  'sink_rejected',
] as const;

export type RejectReason = (typeof REJECT_REASONS)[number];

export interface Rejection {
  readonly reason: RejectReason;
  readonly detail: string;
  /** the part of the payload the rejection is about (one array element, or all of it) */
  readonly payload: Buffer;
}
