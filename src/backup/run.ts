import { writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Config } from '../config/types.js';
import { IngestError } from '../errors.js';
import { redactText } from '../redact.js';
import { describeFile, type FileEntry, type Manifest, verifySet } from './files.js';
import { dumpReadings, type ReadingsPart, restoreReadings } from './influx.js';
import { dumpPostgres, type PostgresPart, restorePostgres } from './postgres.js';
import { dumpRedis, type RedisPart, restoreRedis } from './redis.js';
import { dumpState, restoreState, type StatePart } from './state.js';
import { closeStore, MANIFEST, openStore, type SetInfo, type Store, setName } from './store.js';

// `energy-ingest backup` / `restore` (contract section 18) and the daemon's
// scheduled backups. One set per run; every configured part is attempted even
// when another fails, the manifest says which failed, and the run then fails.

type Progress = (line: string) => void;

export interface BackupResult {
  readonly name: string;
  readonly where: string;
  readonly manifest: Manifest;
  readonly pruned: string[];
}

export async function runBackup(cfg: Config, target: string, progress: Progress): Promise<BackupResult> {
  const store = await openStore(cfg, target, false);
  try {
    return await backupTo(cfg, store, progress);
  } catch (err) {
    throw coded(err, 'EI_BACKUP_FAILED', store);
  } finally {
    closeStore(store);
  }
}

/** Errors of the target itself (S3: no such bucket, access denied; disk full) with a code and the target named. */
function coded(err: unknown, code: 'EI_BACKUP_FAILED' | 'EI_RESTORE_FAILED', store: Store): IngestError {
  if (err instanceof IngestError) return err;
  const e = err as Error & { Code?: string };
  const name = e?.name && e.name !== 'Error' ? `${e.name}: ` : '';
  return new IngestError(code, `${store.where}: ${name}${redactText(e?.message ?? String(err))}`, {
    cause: err,
  });
}

async function backupTo(cfg: Config, store: Store, progress: Progress): Promise<BackupResult> {
  const started = new Date();
  const name = setName(started);
  const dir = await store.stage(name);
  progress(`backup ${name} to ${store.where}`);
  const parts: Manifest['parts'] = {};
  const files: string[] = [];
  const attempt = async (part: string, configured: boolean, fn: () => Promise<Record<string, unknown>>) => {
    if (!configured) {
      parts[part] = { status: 'skipped' };
      return;
    }
    const t0 = Date.now();
    try {
      const r = await fn();
      parts[part] = { status: 'ok', ms: Date.now() - t0, ...r };
    } catch (err) {
      const error = redactText((err as Error).message);
      parts[part] = { status: 'failed', error };
      progress(`${part}: FAILED: ${error}`);
    }
  };
  // PostgreSQL first: its snapshot is taken at once; readings are read up to
  // the same instant, last, so their window has settled by then.
  const cutMs = started.getTime();
  await attempt('postgres', Boolean(cfg.postgres.url), async () => {
    const p = await dumpPostgres(cfg.postgres.url!, dir, progress);
    files.push(...Object.values(p.tables).map((t) => t.file));
    return { ...p };
  });
  await attempt('redis', Boolean(cfg.redis.url), async () => {
    const p = await dumpRedis(cfg.redis.url!, dir, progress);
    files.push(p.file);
    return { ...p };
  });
  await attempt('state', true, async () => {
    const p = await dumpState(cfg.dataDir, dir, progress);
    files.push(...p.files);
    return { ...p };
  });
  await attempt('influx', true, async () => {
    const p = await dumpReadings(cfg, dir, cutMs, progress);
    files.push(p.file);
    return { ...p };
  });
  const entries: FileEntry[] = [];
  for (const f of files) entries.push(await describeFile(dir, f));
  const failed = Object.entries(parts).filter(([, p]) => p.status === 'failed');
  const manifest: Manifest = {
    format: 'energy-ingest-backup',
    format_version: 1,
    name,
    started_at: started.toISOString(),
    finished_at: new Date().toISOString(),
    host: hostname(),
    complete: failed.length === 0,
    parts,
    files: entries,
  };
  await writeFile(join(dir, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o600 });
  await store.commit(name, dir, [...files, MANIFEST]);
  const bytes = entries.reduce((s, e) => s + e.bytes, 0);
  progress(`backup ${name}: ${entries.length} files, ${bytes} bytes${failed.length ? ', INCOMPLETE' : ''}`);
  if (failed.length) {
    throw new IngestError(
      'EI_BACKUP_FAILED',
      `backup ${name} at ${store.where} is incomplete: ${failed.map(([k, p]) => `${k}: ${p.error}`).join('; ')}`,
    );
  }
  const pruned = await prune(store, cfg.backup.keep, progress);
  return { name, where: store.where, manifest, pruned };
}

/**
 * The sets to delete so that the newest `keep` complete sets remain: every
 * older set, complete or not, and unfinished sets older than the newest
 * complete one (a crashed or failed run). A set newer than every complete set
 * may be a backup still running: it stays.
 */
export function planPrune(sets: readonly SetInfo[], keep: number): string[] {
  const sorted = [...sets].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const complete = sorted.filter((s) => s.complete);
  if (!complete.length) return [];
  const kept = new Set(complete.slice(-keep).map((s) => s.name));
  const newest = complete[complete.length - 1]!.name;
  return sorted.filter((s) => !kept.has(s.name) && s.name < newest).map((s) => s.name);
}

/** A set counts as complete only when its manifest says every part succeeded. */
async function listSets(store: Store): Promise<SetInfo[]> {
  const out: SetInfo[] = [];
  for (const s of await store.list()) {
    let complete = false;
    if (s.complete) {
      try {
        complete =
          (JSON.parse((await store.manifest(s.name)) ?? '{}') as { complete?: boolean }).complete === true;
      } catch {
        complete = false;
      }
    }
    out.push({ name: s.name, complete });
  }
  return out;
}

export async function prune(store: Store, keep: number, progress: Progress): Promise<string[]> {
  const doomed = planPrune(await listSets(store), keep);
  for (const name of doomed) {
    await store.remove(name);
    progress(`pruned ${name} (backup.keep ${keep})`);
  }
  return doomed;
}

export interface RestoreResult {
  readonly name: string;
  readonly parts: Record<string, unknown>;
}

export const PARTS = ['postgres', 'influx', 'redis', 'state'] as const;

export async function runRestore(
  cfg: Config,
  source: string,
  progress: Progress,
  /** restore only these parts of the set (default: every part it holds) */
  only: readonly string[] = PARTS,
): Promise<RestoreResult> {
  const store = await openStore(cfg, source, true).catch((err: unknown) => {
    throw err instanceof IngestError
      ? err
      : new IngestError('EI_RESTORE_FAILED', `${source}: ${(err as Error).message}`);
  });
  try {
    return await restoreFrom(cfg, store, progress, only);
  } catch (err) {
    throw coded(err, 'EI_RESTORE_FAILED', store);
  } finally {
    closeStore(store);
  }
}

async function restoreFrom(
  cfg: Config,
  store: Store,
  progress: Progress,
  only: readonly string[],
): Promise<RestoreResult> {
  let name = store.selfSet;
  if (!name) {
    const complete = (await listSets(store)).filter((s) => s.complete);
    name = complete[complete.length - 1]?.name;
    if (!name) throw new IngestError('EI_RESTORE_FAILED', `no complete backup set at ${store.where}`);
  }
  const where = store.selfSet ? store.where : `${store.where.replace(/\/$/, '')}/${name}`;
  const text = await store.manifest(name);
  let listed: string[] = [];
  try {
    listed = (JSON.parse(text ?? '{}') as Manifest).files?.map((f) => f.path) ?? [];
  } catch {
    // verifySet reports the unreadable manifest
  }
  const opened = await store.open(
    name,
    listed.filter((p) => typeof p === 'string' && !p.includes('..')),
  );
  try {
    progress(`restore ${name} from ${where}: verifying ${listed.length} files`);
    const m = await verifySet(opened.dir, text, where);
    progress(`restore ${name}: every SHA-256 matches`);
    const done: Record<string, unknown> = {};
    const failures: string[] = [];
    const attempt = async (part: string, fn: () => Promise<unknown>) => {
      if (m.parts[part]?.status !== 'ok' || !only.includes(part)) return;
      try {
        done[part] = await fn();
      } catch (err) {
        const error = redactText((err as Error).message);
        failures.push(`${part}: ${error}`);
        progress(`${part}: FAILED: ${error}`);
      }
    };
    const need = (what: string | undefined, env: string) => {
      if (!what)
        throw new IngestError('EI_RESTORE_FAILED', `the set has this part but ${env} is not configured`);
      return what;
    };
    await attempt('postgres', () =>
      restorePostgres(
        need(cfg.postgres.url, 'DATABASE_URL'),
        opened.dir,
        m.parts.postgres as never as PostgresPart,
        progress,
      ),
    );
    await attempt('influx', () =>
      restoreReadings(cfg, opened.dir, m.parts.influx as never as ReadingsPart, progress),
    );
    await attempt('redis', () =>
      restoreRedis(
        need(cfg.redis.url, 'REDIS_URL'),
        opened.dir,
        m.parts.redis as never as RedisPart,
        progress,
      ),
    );
    await attempt('state', () =>
      restoreState(cfg.dataDir, opened.dir, m.parts.state as never as StatePart, progress),
    );
    if (failures.length)
      throw new IngestError('EI_RESTORE_FAILED', `restore of ${name} failed: ${failures.join('; ')}`);
    progress(`restore ${name}: done`);
    return { name, parts: done };
  } finally {
    await opened.release();
  }
}
