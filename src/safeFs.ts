import {
  chmodSync,
  closeSync,
  constants,
  existsSync,
  fchmodSync,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  type Stats,
  writeSync,
} from 'node:fs';
import { chmod, type FileHandle, lstat, mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { IngestError } from './errors.js';

// Every file the daemon keeps under DATA_DIR goes through these helpers
// (issue 18 item 6). DATA_DIR holds readings, the durable log, dead letters and
// metadata.json with password hashes, and the daemon may run as root: a file
// created world-readable leaks them, and a symbolic link planted in DATA_DIR
// would make the daemon write (or truncate, or read its trust from) a file
// outside it. So files are created 0600 and directories 0700 whatever the
// umask, opened with O_NOFOLLOW, and accepted only when they are what the
// daemon made: a regular file or directory owned by its uid, one link.

export const PRIVATE_FILE_MODE = 0o600;
export const PRIVATE_DIR_MODE = 0o700;

const { O_APPEND, O_CREAT, O_EXCL, O_NOFOLLOW, O_NONBLOCK, O_RDONLY, O_RDWR, O_WRONLY } = constants;

/** the daemon's uid (undefined where there is none: then ownership is not checked) */
const myUid = (): number | undefined => process.getuid?.();

export class UnsafePathError extends IngestError {
  constructor(
    readonly path: string,
    reason: string,
  ) {
    super('EI_DATA_DIR_UNSAFE', `${path}: ${reason}`);
  }
}

// no 'w': O_TRUNC would cut a hard-linked file before the checks below could refuse it
export type OpenMode = 'r' | 'r+' | 'a';

// O_NONBLOCK: opening a planted FIFO must fail or return at once, never block the daemon
function flagsFor(mode: OpenMode): number {
  const base = O_NOFOLLOW | O_NONBLOCK;
  switch (mode) {
    case 'r':
      return base | O_RDONLY;
    case 'r+':
      return base | O_RDWR;
    case 'a':
      return base | O_WRONLY | O_APPEND | O_CREAT;
  }
}

function symlinkError(path: string, err: unknown): unknown {
  // Linux answers O_NOFOLLOW on a symbolic link with ELOOP
  if ((err as NodeJS.ErrnoException)?.code === 'ELOOP')
    return new UnsafePathError(path, 'is a symbolic link; refusing to follow it (remove it)');
  return err;
}

/** Why an opened (or lstat'ed) entry is not one of the daemon's own files, or null when it is. */
export function fileProblem(st: Stats): string | null {
  if (st.isSymbolicLink()) return 'is a symbolic link; refusing to follow it (remove it)';
  if (!st.isFile()) return 'is not a regular file';
  const uid = myUid();
  if (uid !== undefined && st.uid !== uid) return `is owned by uid ${st.uid}, not the daemon's uid ${uid}`;
  // a hard link to a file elsewhere would be written (or truncated) through, like a symbolic link
  if (st.nlink > 1) return `has ${st.nlink} hard links; refusing to write through them`;
  return null;
}

async function checkOpened(fh: FileHandle, path: string, writing: boolean): Promise<FileHandle> {
  try {
    const st = await fh.stat();
    const problem = fileProblem(st);
    if (problem) throw new UnsafePathError(path, problem);
    // files left by older versions (0644) are tightened when next opened for writing
    if (writing && (st.mode & 0o077) !== 0) await fh.chmod(PRIVATE_FILE_MODE);
    return fh;
  } catch (err) {
    await fh.close().catch(() => {});
    throw err;
  }
}

/**
 * Opens a file under DATA_DIR without following a symbolic link; created 0600;
 * refused (UnsafePathError, EI_DATA_DIR_UNSAFE) unless it is a regular file of
 * the daemon's uid with one link.
 */
export async function openNoFollow(path: string, mode: OpenMode): Promise<FileHandle> {
  let fh: FileHandle;
  try {
    fh = await open(path, flagsFor(mode), PRIVATE_FILE_MODE);
  } catch (err) {
    throw symlinkError(path, err);
  }
  return checkOpened(fh, path, mode !== 'r');
}

/** openNoFollow for the synchronous callers (the alert journal); returns a descriptor. */
export function openNoFollowSync(path: string, mode: OpenMode): number {
  let fd: number;
  try {
    fd = openSync(path, flagsFor(mode), PRIVATE_FILE_MODE);
  } catch (err) {
    throw symlinkError(path, err);
  }
  try {
    const st = fstatSync(fd);
    const problem = fileProblem(st);
    if (problem) throw new UnsafePathError(path, problem);
    // fchmod through the descriptor: the path may have been swapped meanwhile
    if (mode !== 'r' && (st.mode & 0o077) !== 0) fchmodSync(fd, PRIVATE_FILE_MODE);
    return fd;
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

export async function readFileNoFollow(path: string): Promise<Buffer>;
export async function readFileNoFollow(path: string, encoding: 'utf8'): Promise<string>;
export async function readFileNoFollow(path: string, encoding?: 'utf8'): Promise<Buffer | string> {
  const fh = await openNoFollow(path, 'r');
  try {
    return encoding ? await fh.readFile(encoding) : await fh.readFile();
  } finally {
    await fh.close();
  }
}

/** Appends to a file (created 0600) without following a symbolic link. */
export async function appendFileNoFollow(path: string, data: string | Uint8Array): Promise<void> {
  const fh = await openNoFollow(path, 'a');
  try {
    // plain writes: FileHandle.appendFile costs several times more per call (measured)
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    let off = 0;
    while (off < buf.length) off += (await fh.write(buf, off)).bytesWritten;
  } finally {
    await fh.close();
  }
}

/**
 * Writes `path` whole or not at all: a fresh `path.tmp` (whatever stood there
 * is removed first, so a planted link is never written through; O_EXCL),
 * 0600, then renamed over `path` (rename replaces a link itself, never its target).
 */
export async function writeFileAtomicPrivate(
  path: string,
  data: string | Uint8Array,
  opts: { fsync?: boolean } = {},
): Promise<void> {
  const tmp = `${path}.tmp`;
  await rm(tmp, { force: true });
  let fh: FileHandle;
  try {
    fh = await open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, PRIVATE_FILE_MODE);
  } catch (err) {
    throw symlinkError(tmp, err);
  }
  try {
    await fh.chmod(PRIVATE_FILE_MODE); // the umask may have taken bits away; never adds any
    await fh.writeFile(data);
    if (opts.fsync) await fh.datasync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
}

export function writeFileAtomicPrivateSync(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.tmp`;
  rmSync(tmp, { force: true });
  let fd: number;
  try {
    fd = openSync(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, PRIVATE_FILE_MODE);
  } catch (err) {
    throw symlinkError(tmp, err);
  }
  try {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

/**
 * A directory under DATA_DIR (log/, deadletter/, readings/, alerts/): created
 * 0700 when missing; an existing one must be a real directory (not a link) of
 * the daemon's uid, and is tightened to 0700 when it allows more.
 */
export async function mkdirPrivate(dir: string): Promise<void> {
  let st: Stats;
  try {
    st = await lstat(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    try {
      await mkdir(dir, { mode: PRIVATE_DIR_MODE });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // a missing parent is made the same way (existing parents are the operator's)
      if (code === 'ENOENT' && dirname(dir) !== dir) await mkdirPrivate(dirname(dir));
      else if (code !== 'EEXIST') throw e;
      return mkdirPrivate(dir);
    }
    st = await lstat(dir);
  }
  const problem = dirProblem(st);
  if (problem) throw new UnsafePathError(dir, problem);
  if ((st.mode & 0o777) !== PRIVATE_DIR_MODE) await chmod(dir, PRIVATE_DIR_MODE);
}

export function mkdirPrivateSync(dir: string): void {
  let st: Stats;
  try {
    st = lstatSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    if (!existsSync(dirname(dir)) && dirname(dir) !== dir) mkdirPrivateSync(dirname(dir));
    mkdirSync(dir, { mode: PRIVATE_DIR_MODE });
    chmodSync(dir, PRIVATE_DIR_MODE);
    return;
  }
  const problem = dirProblem(st);
  if (problem) throw new UnsafePathError(dir, problem);
  if ((st.mode & 0o777) !== PRIVATE_DIR_MODE) chmodSync(dir, PRIVATE_DIR_MODE);
}

function dirProblem(st: Stats): string | null {
  if (st.isSymbolicLink()) return 'is a symbolic link; refusing to follow it (remove it)';
  if (!st.isDirectory()) return 'is not a directory';
  const uid = myUid();
  if (uid !== undefined && st.uid !== uid) return `is owned by uid ${st.uid}, not the daemon's uid ${uid}`;
  return null;
}

/**
 * Start-up check of DATA_DIR itself (created 0700 with its missing parents).
 * It may be a symbolic link the operator made (the path is the operator's), but
 * the directory it names must belong to the daemon's uid and not be writable
 * by group or others, or anyone could plant links in it: refused with
 * EI_DATA_DIR_UNSAFE. Readable by others is tightened to 0700.
 */
export async function checkDataDir(dir: string): Promise<void> {
  const missing: string[] = [];
  for (let d = dir; ; d = dirname(d)) {
    try {
      await lstat(d);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || dirname(d) === d) throw err;
      missing.unshift(d);
    }
  }
  for (const d of missing) {
    await mkdir(d, { mode: PRIVATE_DIR_MODE }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
    await chmod(d, PRIVATE_DIR_MODE);
  }
  const st = await stat(dir);
  if (!st.isDirectory()) throw new UnsafePathError(dir, 'DATA_DIR is not a directory');
  const uid = myUid();
  if (uid !== undefined && st.uid !== uid)
    throw new UnsafePathError(
      dir,
      `DATA_DIR is owned by uid ${st.uid}, not the daemon's uid ${uid}; chown it to the user the daemon runs as`,
    );
  if ((st.mode & 0o022) !== 0)
    throw new UnsafePathError(
      dir,
      `DATA_DIR is writable by group or others (mode ${octal(st.mode)}); chmod 700 it`,
    );
  if ((st.mode & 0o777) !== PRIVATE_DIR_MODE) await chmod(dir, PRIVATE_DIR_MODE);
}

/**
 * Why a metadata snapshot must not be trusted, or null: it decides who may log
 * in when PostgreSQL is down, so anyone able to write it could grant themselves
 * admin. Besides fileProblem, a mode that lets group or others write it.
 */
export function trustProblem(st: Stats): string | null {
  const p = fileProblem(st);
  if (p) return p;
  if ((st.mode & 0o022) !== 0) return `is writable by group or others (mode ${octal(st.mode)})`;
  return null;
}

function octal(mode: number): string {
  return (mode & 0o777).toString(8).padStart(4, '0');
}

/**
 * An entry found by listing one of the daemon's directories at start (log
 * segments, dead-letter files): refused unless it is the daemon's own regular file.
 */
export async function checkOwnFile(path: string): Promise<Stats> {
  const st = await lstat(path);
  const problem = fileProblem(st);
  if (problem) throw new UnsafePathError(path, problem);
  return st;
}
