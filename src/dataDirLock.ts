import { constants, readFileSync } from 'node:fs';
import { type FileHandle, open, rm, stat, utimes } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { IngestError } from './errors.js';
import { PRIVATE_FILE_MODE, readFileNoFollow } from './safeFs.js';

const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = constants;

/*
 * DATA_DIR/daemon.lock: one process at a time owns a DATA_DIR (issue 14 item 5).
 * A second daemon, or `energy-ingest drain`, on a directory a running daemon
 * holds would append to (or commit past) the same durable log: records lost or
 * sent twice. Node has no flock(2), so the lock is a pid file created with
 * O_EXCL (0600, never through a link), holding the pid and that process's start
 * time (/proc/PID/stat field 22). A lock whose process is gone, or whose pid now
 * belongs to another process (a different start time: the pid was reused after
 * a kill -9 or a reboot), is stale and taken over, logged.
 *
 * Pids say nothing across hosts or containers (two containers mounting one
 * volume both run as pid 1): the holder also names its host and touches the
 * file every few seconds, and a lock from another host is live while it was
 * touched within STALE_MS.
 */

const TOUCH_MS = 5000;
export const STALE_MS = 30_000;

export const LOCK_FILE = 'daemon.lock';

interface LockBody {
  readonly pid: number;
  /** clock ticks since boot when the process started; null where /proc is missing */
  readonly startTime: string | null;
  readonly command: string;
  readonly host?: string;
}

/** A process's start time from /proc (Linux); null elsewhere or when it is gone. */
function processStartTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name (field 2) may hold spaces and parentheses: count from the last ')'
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? null;
  } catch {
    return null;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, owned by someone else
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The holder of the lock described by `text` (last touched at `mtimeMs`), or null when it is stale. */
export function liveHolder(text: string, mtimeMs = Date.now()): LockBody | null {
  let body: LockBody;
  try {
    body = JSON.parse(text) as LockBody;
  } catch {
    return null; // torn write of a lock (crash between create and write): nobody holds it
  }
  if (!Number.isSafeInteger(body.pid) || body.pid <= 0) return null;
  if (body.host !== undefined && body.host !== hostname())
    return Date.now() - mtimeMs < STALE_MS ? body : null;
  // our own pid: a previous incarnation (a container's pid 1 after a restart)
  if (body.pid === process.pid) return null;
  if (!alive(body.pid)) return null;
  const now = processStartTime(body.pid);
  if (body.startTime && now && now !== body.startTime) return null; // pid reused
  return body;
}

export class DataDirLock {
  private held = false;
  private toucher: NodeJS.Timeout | null = null;

  constructor(
    readonly dataDir: string,
    /** what the holder is, for the refusal message of whoever comes next */
    private readonly command: string,
    private readonly onTakeOver?: (stale: string) => void,
  ) {}

  get path(): string {
    return join(this.dataDir, LOCK_FILE);
  }

  /** Takes the lock or throws EI_DATA_DIR_LOCKED naming the holder. */
  async acquire(): Promise<void> {
    const body: LockBody = {
      pid: process.pid,
      startTime: processStartTime(process.pid),
      command: this.command,
      host: hostname(),
    };
    for (let attempt = 0; attempt < 3; attempt++) {
      let fh: FileHandle;
      try {
        fh = await open(this.path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, PRIVATE_FILE_MODE);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        let text: string;
        let mtimeMs: number;
        try {
          text = await readFileNoFollow(this.path, 'utf8');
          mtimeMs = (await stat(this.path)).mtimeMs;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue; // released meanwhile
          throw e; // a planted link or foreign file: EI_DATA_DIR_UNSAFE naming it
        }
        const holder = liveHolder(text, mtimeMs);
        if (holder) {
          const where = holder.host && holder.host !== hostname() ? ` on host ${holder.host}` : '';
          throw new IngestError(
            'EI_DATA_DIR_LOCKED',
            `${this.dataDir} is held by a running process (pid ${holder.pid}${where}, ${holder.command}): ` +
              `stop it first (${this.path})`,
          );
        }
        this.onTakeOver?.(text.trim());
        await rm(this.path, { force: true });
        continue;
      }
      try {
        await fh.chmod(PRIVATE_FILE_MODE);
        await fh.writeFile(`${JSON.stringify(body)}\n`);
        await fh.datasync();
      } finally {
        await fh.close();
      }
      this.held = true;
      // proof of life for processes on other hosts sharing this directory
      this.toucher = setInterval(() => {
        const now = new Date();
        utimes(this.path, now, now).catch(() => {});
      }, TOUCH_MS);
      this.toucher.unref();
      return;
    }
    throw new IngestError('EI_DATA_DIR_LOCKED', `${this.path}: could not take the lock (contended)`);
  }

  /** Removes the lock if it is still ours. */
  async release(): Promise<void> {
    if (!this.held) return;
    this.held = false;
    if (this.toucher) clearInterval(this.toucher);
    this.toucher = null;
    try {
      const body = JSON.parse(await readFileNoFollow(this.path, 'utf8')) as LockBody;
      if (body.pid !== process.pid) return;
    } catch {
      return;
    }
    await rm(this.path, { force: true });
  }
}
