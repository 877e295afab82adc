import { Redis } from 'ioredis';
import { IngestError } from '../errors.js';
import { redactText } from '../redact.js';
import { LineWriter, readLines } from './files.js';

// The daemon's Redis keys (contract sections 11, 12, 16, 17) and the
// dashboard's sessions, exported type by type as JSON lines (portable between
// Redis versions, unlike DUMP payloads) with their expiry. A key's expiry is
// kept as an instant: restored later, it has the TTL it had at backup time
// minus the time since, and a key that would have expired by now is not
// brought back (a session or notification never outlives its TTL by a restore).

export const REDIS_PATTERNS = [
  'alerts:stream',
  'alerts:active:*',
  'notification:*',
  'cache:building_list',
  'cache:building:*',
  'cache:latest:*',
  'forecast:*',
  'session:*',
] as const;

export const REDIS_FILE = 'redis/keys.jsonl.gz';
const STREAM_CHUNK = 1000;

export interface RedisPart {
  keys: number;
  by_pattern: Record<string, number>;
  file: string;
}

/** text when the bytes are UTF-8 (read back identically), else base64 */
type Enc = string | { b64: string };
const enc = (b: Buffer): Enc => {
  const s = b.toString('utf8');
  return Buffer.byteLength(s) === b.length && Buffer.from(s, 'utf8').equals(b)
    ? s
    : { b64: b.toString('base64') };
};
const dec = (e: Enc): Buffer =>
  typeof e === 'string' ? Buffer.from(e, 'utf8') : Buffer.from(e.b64, 'base64');

export interface KeyLine {
  key: string;
  type: 'string' | 'hash' | 'list' | 'set' | 'zset' | 'stream';
  /** epoch ms, or null: no expiry */
  expire_at: number | null;
  /** streams come in several lines; the first replaces the key */
  first: boolean;
  value: unknown;
}

function client(url: string): Redis {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 2, enableOfflineQueue: true });
  r.on('error', () => {});
  return r;
}

async function connect(url: string): Promise<Redis> {
  const r = client(url);
  try {
    await r.connect();
  } catch (err) {
    r.disconnect();
    throw new IngestError('EI_BACKUP_FAILED', `redis: did not answer: ${redactText((err as Error).message)}`);
  }
  return r;
}

async function scan(r: Redis, pattern: string): Promise<string[]> {
  if (!pattern.includes('*')) return (await r.exists(pattern)) ? [pattern] : [];
  const keys = new Set<string>();
  let cursor = '0';
  do {
    const [next, batch] = await r.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    for (const k of batch) keys.add(k);
    cursor = next;
  } while (cursor !== '0');
  return [...keys].sort();
}

export async function dumpRedis(
  url: string,
  dir: string,
  progress: (line: string) => void,
): Promise<RedisPart> {
  const r = await connect(url);
  const out = await LineWriter.open(dir, REDIS_FILE);
  const part: RedisPart = { keys: 0, by_pattern: {}, file: REDIS_FILE };
  try {
    for (const pattern of REDIS_PATTERNS) {
      let n = 0;
      for (const key of await scan(r, pattern)) {
        if (await dumpKey(r, key, out)) n++;
      }
      part.by_pattern[pattern] = n;
      part.keys += n;
      if (n) progress(`redis: ${pattern}: ${n} keys`);
    }
  } finally {
    await out.close();
    r.disconnect();
  }
  progress(`redis: ${part.keys} keys`);
  return part;
}

/** One key, read in one MULTI (value and TTL agree); false when it vanished meanwhile. */
async function dumpKey(r: Redis, key: string, out: LineWriter): Promise<boolean> {
  const type = (await r.type(key)) as KeyLine['type'] | 'none';
  const at = Date.now();
  const expireAt = (pttl: number): number | null => (pttl >= 0 ? at + pttl : null);
  const line = (value: unknown, pttl: number, first = true): string =>
    JSON.stringify({
      key,
      type: type as KeyLine['type'],
      expire_at: expireAt(pttl),
      first,
      value,
    } satisfies KeyLine);
  const m = r.multi().pttl(key);
  switch (type) {
    case 'none':
      return false;
    case 'string':
      m.getBuffer(key);
      break;
    case 'hash':
      m.hgetallBuffer(key);
      break;
    case 'list':
      m.lrangeBuffer(key, 0, -1);
      break;
    case 'set':
      m.smembersBuffer(key);
      break;
    case 'zset':
      m.zrangeBuffer(key, 0, -1, 'WITHSCORES');
      break;
    case 'stream': {
      // chunks by id: a 100,000-entry alerts:stream never sits in memory whole
      const pttl = await r.pttl(key);
      let from = '-';
      let first = true;
      for (;;) {
        const entries = (await r.xrangeBuffer(key, from, '+', 'COUNT', STREAM_CHUNK)) as Array<
          [Buffer, Buffer[]]
        >;
        const chunk = entries.map(([id, kv]) => [id.toString(), kv.map(enc)]);
        if (chunk.length || first) await out.write(line(chunk, pttl, first));
        first = false;
        if (entries.length < STREAM_CHUNK) break;
        from = `(${entries[entries.length - 1]![0].toString()}`;
      }
      return true;
    }
    default:
      throw new IngestError(
        'EI_BACKUP_FAILED',
        `redis: ${key} has type ${type}, which no part of the system writes`,
      );
  }
  const res = await m.exec();
  if (!res) return false;
  for (const [err] of res) if (err) throw err;
  const pttl = res[0]![1] as number;
  const v = res[1]![1];
  if (pttl === -2) return false;
  let value: unknown;
  if (type === 'string') {
    if (v === null) return false;
    value = enc(v as Buffer);
  } else if (type === 'hash') {
    // hgetallBuffer gives an object keyed by the field as text
    value = Object.entries(v as Record<string, Buffer>).map(([f, b]) => [f, enc(b)]);
  } else if (type === 'zset') {
    const flat = v as Buffer[];
    const pairs: Array<[Enc, string]> = [];
    for (let i = 0; i < flat.length; i += 2) pairs.push([enc(flat[i]!), flat[i + 1]!.toString()]);
    value = pairs;
  } else value = (v as Buffer[]).map(enc);
  await out.write(line(value, pttl));
  return true;
}

export async function restoreRedis(
  url: string,
  dir: string,
  part: RedisPart,
  progress: (line: string) => void,
): Promise<{ keys: number; expired: number }> {
  let r: Redis;
  try {
    r = await connect(url);
  } catch (err) {
    throw new IngestError('EI_RESTORE_FAILED', (err as Error).message);
  }
  let keys = 0;
  let expired = 0;
  try {
    for await (const text of readLines(`${dir}/${part.file}`)) {
      const k = JSON.parse(text) as KeyLine;
      if (k.expire_at !== null && k.expire_at <= Date.now()) {
        if (k.first) {
          await r.del(k.key);
          expired++;
        }
        continue;
      }
      // one MULTI per line: a reader never sees the key half restored
      const m = r.multi();
      if (k.first) m.del(k.key);
      const v = k.value as never;
      switch (k.type) {
        case 'string':
          m.set(k.key, dec(v));
          break;
        case 'hash': {
          const pairs = v as Array<[string, Enc]>;
          if (pairs.length) m.hset(k.key, ...pairs.flatMap(([f, e]) => [f, dec(e)]));
          break;
        }
        case 'list': {
          const items = (v as Enc[]).map(dec);
          if (items.length) m.rpush(k.key, ...items);
          break;
        }
        case 'set': {
          const items = (v as Enc[]).map(dec);
          if (items.length) m.sadd(k.key, ...items);
          break;
        }
        case 'zset': {
          const pairs = v as Array<[Enc, string]>;
          if (pairs.length) m.zadd(k.key, ...pairs.flatMap(([e, score]) => [score, dec(e)]));
          break;
        }
        case 'stream':
          for (const [id, kv] of v as Array<[string, Enc[]]>) m.xadd(k.key, id, ...kv.map(dec));
          break;
        default:
          throw new IngestError('EI_RESTORE_FAILED', `redis: ${k.key}: unknown type ${String(k.type)}`);
      }
      if (k.expire_at !== null) m.pexpireat(k.key, k.expire_at);
      const res = await m.exec();
      for (const [err] of res ?? [])
        if (err) throw new IngestError('EI_RESTORE_FAILED', `redis: ${k.key}: ${err.message}`);
      if (k.first) {
        keys++;
        if (keys % 10_000 === 0) progress(`redis: ${keys} keys restored …`);
      }
    }
  } finally {
    r.disconnect();
  }
  progress(
    `redis: ${keys} keys restored${expired ? `, ${expired} expired since the backup and left out` : ''}`,
  );
  return { keys, expired };
}
