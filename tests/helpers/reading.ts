import type { Reading } from '../../src/ingest/reading.js';

/** A valid accepted reading (the contract's example), with whatever a test changes. */
export function aReading(over: Partial<Reading> = {}): Reading {
  return {
    buildingId: 1,
    building: 'building_001',
    floor: '3',
    room: 'office_301',
    sensorType: 'temperature',
    value: 23.5,
    unit: 'celsius',
    status: 'normal',
    extra: [],
    timestampMs: 1705314600000,
    ...over,
  };
}
