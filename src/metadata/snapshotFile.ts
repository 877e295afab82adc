import { constants } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import type { Logger } from 'pino';
import { trustProblem, writeFileAtomicPrivate } from '../safeFs.js';
import type { MetadataSnapshot } from './snapshot.js';

// {DATA_DIR}/metadata.json: the last good metadata, used when PostgreSQL is
// unreachable at start. It holds device password hashes and decides who may
// log in with which role, so it is written 0600 (atomically, never through a
// planted link) and read back only when it is the daemon's own file that no
// one else could have written (issue 18 item 6).

/** Saves a snapshot: a fresh 0600 temp file renamed over the old one. */
export async function saveSnapshotFile(path: string, s: MetadataSnapshot): Promise<void> {
  await writeFileAtomicPrivate(path, JSON.stringify(s));
}

/**
 * The saved snapshot, or null when there is none or it cannot be trusted (a
 * link, not a regular file, another owner, writable by group or others): then
 * a warning says why and the daemon starts as if there were none.
 */
export async function readSnapshotFile(path: string, log: Logger): Promise<MetadataSnapshot | null> {
  let fh: FileHandle;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    const why = code === 'ELOOP' ? 'is a symbolic link' : (err as Error).message;
    log.warn({ file: path, code }, `${path} ignored: ${why}; starting as if there were no saved metadata`);
    return null;
  }
  try {
    const problem = trustProblem(await fh.stat());
    if (problem) {
      log.warn(
        { file: path, code: 'EI_DATA_DIR_UNSAFE' },
        `${path} ignored: ${problem}; starting as if there were no saved metadata`,
      );
      return null;
    }
    return JSON.parse(await fh.readFile('utf8')) as MetadataSnapshot;
  } catch (err) {
    log.warn({ file: path }, `${path} ignored: unreadable (${(err as Error).message})`);
    return null;
  } finally {
    await fh.close();
  }
}
