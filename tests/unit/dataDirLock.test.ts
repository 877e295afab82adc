import { spawn } from 'node:child_process';
import {
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DataDirLock, LOCK_FILE, liveHolder, STALE_MS } from '../../src/dataDirLock.js';

// DATA_DIR/daemon.lock: one process per DATA_DIR; stale locks (dead pid, or a
// pid reused by another process) are taken over; never written through a link.

const dirs: string[] = [];
const kids: Array<ReturnType<typeof spawn>> = [];
afterEach(() => {
  for (const k of kids.splice(0)) k.kill('SIGKILL');
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const dir = () => {
  const d = mkdtempSync(join(tmpdir(), 'ei-lock-'));
  dirs.push(d);
  return d;
};
const startTime = (pid: number) => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
};
async function sleeper(): Promise<number> {
  const k = spawn('sleep', ['30']);
  kids.push(k);
  await new Promise((r) => k.once('spawn', r));
  return k.pid!;
}

describe('DataDirLock', () => {
  it('creates daemon.lock 0600 with the pid and start time, and removes it on release', async () => {
    const d = dir();
    const lock = new DataDirLock(d, 'test');
    await lock.acquire();
    const path = join(d, LOCK_FILE);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const body = JSON.parse(readFileSync(path, 'utf8'));
    expect(body).toMatchObject({ pid: process.pid, startTime: startTime(process.pid), command: 'test' });
    await lock.release();
    expect(existsSync(path)).toBe(false);
  });

  it('refuses a lock held by a live process (EI_DATA_DIR_LOCKED naming its pid)', async () => {
    const d = dir();
    const pid = await sleeper();
    writeFileSync(
      join(d, LOCK_FILE),
      JSON.stringify({ pid, startTime: startTime(pid), command: 'energy-ingest start' }),
    );
    await expect(new DataDirLock(d, 'test').acquire()).rejects.toMatchObject({
      code: 'EI_DATA_DIR_LOCKED',
      message: expect.stringContaining(`pid ${pid}`),
    });
    // and release() of a lock never acquired leaves the holder's file alone
    await new DataDirLock(d, 'test').release();
    expect(existsSync(join(d, LOCK_FILE))).toBe(true);
  });

  it('takes over a stale lock: dead pid, pid reused by another process, torn file', async () => {
    const pid = await sleeper();
    for (const stale of [
      JSON.stringify({ pid: 2 ** 22 + 7, startTime: '1', command: 'x' }), // beyond pid_max: no such process
      JSON.stringify({ pid, startTime: '1', command: 'x' }), // live pid, another start time
      '{"pid":', // crash between create and write
    ]) {
      expect(liveHolder(stale)).toBeNull();
      const d = dir();
      writeFileSync(join(d, LOCK_FILE), stale);
      const seen: string[] = [];
      const lock = new DataDirLock(d, 'test', (s) => seen.push(s));
      await lock.acquire();
      expect(seen).toEqual([stale]);
      expect(JSON.parse(readFileSync(join(d, LOCK_FILE), 'utf8')).pid).toBe(process.pid);
      await lock.release();
    }
  });

  it('a lock from another host (another container on a shared volume) is live while it is touched', async () => {
    const d = dir();
    const path = join(d, LOCK_FILE);
    // pid 1 on another host: our own pid table says nothing about it
    writeFileSync(
      path,
      JSON.stringify({ pid: 1, startTime: '1', command: 'energy-ingest start', host: 'other-host' }),
    );
    await expect(new DataDirLock(d, 'test').acquire()).rejects.toMatchObject({
      code: 'EI_DATA_DIR_LOCKED',
      message: expect.stringContaining('on host other-host'),
    });
    const old = new Date(Date.now() - STALE_MS - 1000);
    utimesSync(path, old, old);
    const lock = new DataDirLock(d, 'test');
    await lock.acquire();
    expect(JSON.parse(readFileSync(path, 'utf8'))).toMatchObject({ pid: process.pid, host: hostname() });
    await lock.release();
  });

  it('never follows a symbolic link planted as daemon.lock (EI_DATA_DIR_UNSAFE)', async () => {
    const d = dir();
    const target = join(dir(), 'victim');
    writeFileSync(target, 'precious');
    symlinkSync(target, join(d, LOCK_FILE));
    await expect(new DataDirLock(d, 'test').acquire()).rejects.toMatchObject({ code: 'EI_DATA_DIR_UNSAFE' });
    expect(readFileSync(target, 'utf8')).toBe('precious');
  });
});
