import { parseBuildingSegment } from './building.js';

// Topic grammar (contract section 4): sensors/{building}/{floor}/{room}/{sensor_type}

export interface SensorTopic {
  readonly buildingId: number;
  readonly floor: string;
  readonly room: string;
  readonly sensorType: string;
}

export const SENSOR_PREFIX = 'sensors/';
const MAX_SEGMENT_BYTES = 64;
// C0, DEL and C1 controls: they would corrupt logs, CSV exports and the line protocol.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

export function isSensorTopic(topic: string): boolean {
  return topic.startsWith(SENSOR_PREFIX);
}

/** A label segment's problem, or undefined when it is fine. */
export function segmentProblem(name: string, segment: string): string | undefined {
  if (segment.length === 0) return `${name} is empty`;
  if (Buffer.byteLength(segment, 'utf8') > MAX_SEGMENT_BYTES)
    return `${name} is longer than ${MAX_SEGMENT_BYTES} bytes`;
  if (CONTROL.test(segment)) return `${name} contains a control character`;
  // A lone surrogate cannot be stored as UTF-8: it would read back as U+FFFD.
  if (!segment.isWellFormed()) return `${name} is not valid UTF-8`;
  return undefined;
}

export type TopicResult = { ok: true; topic: SensorTopic } | { ok: false; detail: string };

export function parseSensorTopic(topic: string): TopicResult {
  const parts = topic.split('/');
  if (parts.length !== 5 || parts[0] !== 'sensors') {
    return { ok: false, detail: 'topic must be sensors/{building}/{floor}/{room}/{sensor_type}' };
  }
  const [, building, floor, room, sensorType] = parts as [string, string, string, string, string];
  const buildingId = parseBuildingSegment(building);
  if (buildingId === undefined) {
    return {
      ok: false,
      detail: `building "${building.slice(0, 64)}" is neither building_NNN nor a positive id`,
    };
  }
  for (const [name, seg] of [
    ['floor', floor],
    ['room', room],
    ['sensor_type', sensorType],
  ] as const) {
    const problem = segmentProblem(name, seg);
    if (problem) return { ok: false, detail: problem };
  }
  return { ok: true, topic: { buildingId, floor, room, sensorType } };
}
