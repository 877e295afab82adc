// Canonical building keys: PostgreSQL buildings.id 1 → "building_001",
// 1234 → "building_1234". Topics may carry either form; storage uses the key.

export function canonicalBuildingKey(id: number): string {
  return `building_${String(id).padStart(3, '0')}`;
}

const KEY = /^building_(\d{1,15})$/;
const BARE = /^\d{1,15}$/;

/** The numeric id behind a topic's building segment, or undefined if it is neither form. */
export function parseBuildingSegment(segment: string): number | undefined {
  const m = KEY.exec(segment);
  const digits = m ? m[1]! : BARE.test(segment) ? segment : undefined;
  if (digits === undefined) return undefined;
  const id = Number(digits);
  if (!Number.isSafeInteger(id) || id < 1) return undefined;
  // building_01 is not canonical for id 1: only zero padding to 3 digits, or none, is.
  if (m && canonicalBuildingKey(id) !== segment) return undefined;
  return id;
}
