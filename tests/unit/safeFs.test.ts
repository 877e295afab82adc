import {
  chmodSync,
  chownSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { configSnapshot } from '../../src/metadata/snapshot.js';
import { readSnapshotFile, saveSnapshotFile } from '../../src/metadata/snapshotFile.js';
import {
  appendFileNoFollow,
  checkDataDir,
  checkOwnFile,
  mkdirPrivate,
  mkdirPrivateSync,
  openNoFollow,
  openNoFollowSync,
  readFileNoFollow,
  UnsafePathError,
  writeFileAtomicPrivate,
  writeFileAtomicPrivateSync,
} from '../../src/safeFs.js';

const isRoot = process.getuid?.() === 0;
const mode = (p: string) => statSync(p).mode & 0o777;
const SECRET = 'outside, must not change\n';

let dir: string;
let outside: string;
let oldUmask: number;
beforeEach(() => {
  // the usual default: what made every file 0644 before
  oldUmask = process.umask(0o022);
  dir = mkdtempSync(join(tmpdir(), 'ei-safefs-'));
  outside = join(dir, 'outside');
  writeFileSync(outside, SECRET, { mode: 0o600 });
});
afterEach(() => {
  process.umask(oldUmask);
  rmSync(dir, { recursive: true, force: true });
});
afterAll(() => {
  process.umask(oldUmask);
});

async function unsafe(p: Promise<unknown>): Promise<UnsafePathError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UnsafePathError);
  expect((err as UnsafePathError).code).toBe('EI_DATA_DIR_UNSAFE');
  return err as UnsafePathError;
}

describe('private files under umask 022', () => {
  it('appendFileNoFollow, writeFileAtomicPrivate(Sync), openNoFollow(Sync) create 0600', async () => {
    await appendFileNoFollow(join(dir, 'a'), 'x\n');
    await appendFileNoFollow(join(dir, 'a'), 'y\n');
    expect(readFileSync(join(dir, 'a'), 'utf8')).toBe('x\ny\n');
    await writeFileAtomicPrivate(join(dir, 'b'), 'b');
    writeFileAtomicPrivateSync(join(dir, 'c'), 'c');
    const fh = await openNoFollow(join(dir, 'd'), 'a');
    await fh.close();
    const fd = openNoFollowSync(join(dir, 'e'), 'a');
    (await import('node:fs')).closeSync(fd);
    for (const f of ['a', 'b', 'c', 'd', 'e']) expect(mode(join(dir, f))).toBe(0o600);
    expect(readFileSync(join(dir, 'b'), 'utf8')).toBe('b');
  });

  it('tightens an existing 0644 file when opened for writing, not when read', async () => {
    const p = join(dir, 'old');
    writeFileSync(p, 'old');
    chmodSync(p, 0o644);
    expect(await readFileNoFollow(p, 'utf8')).toBe('old');
    expect(mode(p)).toBe(0o644);
    await appendFileNoFollow(p, '!');
    expect(mode(p)).toBe(0o600);
  });

  it('mkdirPrivate(Sync): 0700 with missing parents; tightens 0755; refuses a link or a file', async () => {
    await mkdirPrivate(join(dir, 'x', 'y', 'z'));
    for (const d of ['x', 'x/y', 'x/y/z']) expect(mode(join(dir, d))).toBe(0o700);
    mkdirPrivateSync(join(dir, 's', 't'));
    expect(mode(join(dir, 's', 't'))).toBe(0o700);
    mkdirSync(join(dir, 'wide'));
    chmodSync(join(dir, 'wide'), 0o755);
    await mkdirPrivate(join(dir, 'wide'));
    expect(mode(join(dir, 'wide'))).toBe(0o700);
    symlinkSync(join(dir, 'wide'), join(dir, 'link'));
    expect((await unsafe(mkdirPrivate(join(dir, 'link')))).message).toMatch(/symbolic link/);
    expect(() => mkdirPrivateSync(join(dir, 'link'))).toThrow(UnsafePathError);
    expect((await unsafe(mkdirPrivate(outside))).message).toMatch(/not a directory/);
  });
});

describe('links are never followed', () => {
  it('append, open, read through a symbolic link: refused, target unchanged', async () => {
    const link = join(dir, 'link');
    symlinkSync(outside, link);
    expect((await unsafe(appendFileNoFollow(link, 'evil'))).message).toBe(
      `${link}: is a symbolic link; refusing to follow it (remove it)`,
    );
    await unsafe(openNoFollow(link, 'r+'));
    await unsafe(readFileNoFollow(link));
    expect(() => openNoFollowSync(link, 'a')).toThrow(UnsafePathError);
    await unsafe(checkOwnFile(link));
    expect(readFileSync(outside, 'utf8')).toBe(SECRET);
  });

  it('a dangling link is not created through either', async () => {
    const link = join(dir, 'dangling');
    symlinkSync(join(dir, 'would-be-created'), link);
    await unsafe(appendFileNoFollow(link, 'x'));
    expect(() => statSync(join(dir, 'would-be-created'))).toThrow();
  });

  it('a hard link is refused for writing (it would write into the other name)', async () => {
    const hard = join(dir, 'hard');
    linkSync(outside, hard);
    expect((await unsafe(appendFileNoFollow(hard, 'evil'))).message).toMatch(/2 hard links/);
    expect(readFileSync(outside, 'utf8')).toBe(SECRET);
  });

  it('writeFileAtomicPrivate replaces a planted temp link and a planted target link, never their targets', async () => {
    const p = join(dir, 'metadata.json');
    symlinkSync(outside, `${p}.tmp`);
    await writeFileAtomicPrivate(p, 'hashes');
    expect(readFileSync(outside, 'utf8')).toBe(SECRET);
    expect(readFileSync(p, 'utf8')).toBe('hashes');
    rmSync(p);
    symlinkSync(outside, p);
    writeFileAtomicPrivateSync(p, 'again');
    expect(readFileSync(outside, 'utf8')).toBe(SECRET);
    expect(lstatSync(p).isFile()).toBe(true);
    expect(mode(p)).toBe(0o600);
  });

  it('a FIFO is refused at once instead of blocking', async () => {
    const { execFileSync } = await import('node:child_process');
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    await unsafe(readFileNoFollow(fifo));
    await unsafe(checkOwnFile(fifo));
  });
});

describe('checkDataDir', () => {
  it('creates a missing DATA_DIR 0700 and tightens a 0755 one', async () => {
    await checkDataDir(join(dir, 'new', 'data'));
    expect(mode(join(dir, 'new'))).toBe(0o700);
    expect(mode(join(dir, 'new', 'data'))).toBe(0o700);
    chmodSync(dir, 0o755);
    await checkDataDir(dir);
    expect(mode(dir)).toBe(0o700);
  });

  it.each([0o777, 0o770, 0o702, 0o1777])('refuses mode %s (writable by group or others)', async (m) => {
    chmodSync(dir, m);
    const err = await unsafe(checkDataDir(dir));
    expect(err.message).toMatch(/writable by group or others .*chmod 700/);
    chmodSync(dir, 0o700);
  });

  it('accepts a link the operator made to a safe directory', async () => {
    mkdirSync(join(dir, 'real'), { mode: 0o700 });
    symlinkSync(join(dir, 'real'), join(dir, 'data'));
    await checkDataDir(join(dir, 'data'));
  });

  it.runIf(isRoot)(
    "refuses a DATA_DIR owned by another uid (running as root: chown'ed to nobody)",
    async () => {
      const d = join(dir, 'theirs');
      mkdirSync(d, { mode: 0o700 });
      chownSync(d, 65534, 65534);
      expect((await unsafe(checkDataDir(d))).message).toMatch(/owned by uid 65534/);
      expect((await unsafe(mkdirPrivate(d))).message).toMatch(/owned by uid 65534/);
    },
  );
});

describe('metadata.json', () => {
  const log = pino({ level: 'silent' });
  const snap = configSnapshot([{ id: 7, name: 'B', address: 'A' }]);

  it('saved 0600 and read back when it is the daemon’s own', async () => {
    const p = join(dir, 'metadata.json');
    await saveSnapshotFile(p, snap);
    expect(mode(p)).toBe(0o600);
    expect((await readSnapshotFile(p, log))?.buildings[0]?.id).toBe(7);
  });

  it('absent: null', async () => {
    expect(await readSnapshotFile(join(dir, 'none.json'), log)).toBeNull();
  });

  it.each([0o666, 0o620, 0o602])('mode %s: ignored with a warning', async (m) => {
    const p = join(dir, 'metadata.json');
    await saveSnapshotFile(p, snap);
    chmodSync(p, m);
    const lines: string[] = [];
    const warnLog = pino({ level: 'warn' }, { write: (s: string) => lines.push(s) });
    expect(await readSnapshotFile(p, warnLog)).toBeNull();
    expect(lines.join('')).toMatch(/metadata.json ignored: is writable by group or others/);
  });

  it('0644 (readable by others, written only by the daemon) is still trusted', async () => {
    const p = join(dir, 'metadata.json');
    await saveSnapshotFile(p, snap);
    chmodSync(p, 0o644);
    expect(await readSnapshotFile(p, log)).not.toBeNull();
  });

  it('a symbolic link: ignored', async () => {
    const real = join(dir, 'real.json');
    await saveSnapshotFile(real, snap);
    symlinkSync(real, join(dir, 'metadata.json'));
    expect(await readSnapshotFile(join(dir, 'metadata.json'), log)).toBeNull();
  });

  it.runIf(isRoot)('owned by another uid: ignored', async () => {
    const p = join(dir, 'metadata.json');
    await saveSnapshotFile(p, snap);
    chownSync(p, 65534, 65534);
    expect(await readSnapshotFile(p, log)).toBeNull();
  });
});

describe('the daemon’s files refuse planted links at open', () => {
  const silent = pino({ level: 'silent' });

  it('DurableLog.open: a linked segment or committed file is refused, its target untouched', async () => {
    const { DurableLog } = await import('../../src/pipeline/durableLog.js');
    const logDir = join(dir, 'log');
    mkdirSync(logDir, { mode: 0o700 });
    symlinkSync(outside, join(logDir, '00000000000000000000.seg'));
    const err = await unsafe(
      DurableLog.open({ dir: logDir, durability: 'fsync', maxBytes: 1 << 30, log: silent }),
    );
    expect(err.message).toContain('00000000000000000000.seg: is a symbolic link');
    rmSync(join(logDir, '00000000000000000000.seg'));
    symlinkSync(outside, join(logDir, 'committed.influx'));
    await unsafe(DurableLog.open({ dir: logDir, durability: 'fsync', maxBytes: 1 << 30, log: silent }));
    expect(readFileSync(outside, 'utf8')).toBe(SECRET);
  });

  it('AlertJournal.open: a linked journal is refused; a linked seen.json is replaced, not written through', async () => {
    const { AlertJournal } = await import('../../src/alerts/journal.js');
    mkdirSync(join(dir, 'alerts'), { mode: 0o700 });
    symlinkSync(outside, join(dir, 'alerts', 'journal.jsonl'));
    await unsafe(AlertJournal.open({ dataDir: dir, sync: false, log: silent }));
    rmSync(join(dir, 'alerts', 'journal.jsonl'));
    symlinkSync(outside, join(dir, 'alerts', 'seen.json'));
    const { journal } = await AlertJournal.open({ dataDir: dir, sync: false, log: silent });
    await journal.saveSeen([]);
    await journal.close();
    expect(readFileSync(outside, 'utf8')).toBe(SECRET);
    expect(lstatSync(join(dir, 'alerts', 'seen.json')).isFile()).toBe(true);
    expect(mode(join(dir, 'alerts', 'journal.jsonl'))).toBe(0o600);
  });
});
