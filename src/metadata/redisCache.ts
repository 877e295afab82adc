import type { Redis } from 'ioredis';
import type { MetadataSnapshot } from './snapshot.js';

// The system guide's Redis cache (contract section 12), rewritten at every metadata load.

const LIST_KEY = 'cache:building_list';
const BUILDING_PREFIX = 'cache:building:';
const TTL_S = 600;

export async function writeBuildingCache(
  redis: Redis,
  snapshot: MetadataSnapshot,
  previousIds: ReadonlySet<number>,
): Promise<Set<number>> {
  const ids = new Set(snapshot.buildings.map((b) => b.id));
  const tx = redis.multi();
  tx.set(
    LIST_KEY,
    JSON.stringify(snapshot.buildings.map((b) => ({ id: b.id, name: b.name, address: b.address }))),
    'EX',
    TTL_S,
  );
  for (const b of snapshot.buildings) {
    const { key: _key, ...row } = b;
    tx.set(`${BUILDING_PREFIX}${b.id}`, JSON.stringify(row), 'EX', TTL_S);
  }
  for (const id of previousIds) if (!ids.has(id)) tx.del(`${BUILDING_PREFIX}${id}`);
  await tx.exec();
  return ids;
}
