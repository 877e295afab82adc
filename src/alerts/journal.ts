import { closeSync, fdatasync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import {
  mkdirPrivate,
  openNoFollowSync,
  readFileNoFollow,
  UnsafePathError,
  writeFileAtomicPrivate,
  writeFileAtomicPrivateSync,
} from '../safeFs.js';
import { type ActiveAlert, type AlertEvent, alertTopic } from './evaluator.js';

// The alert state file under {DATA_DIR}/alerts: an append-only journal of
// raised/cleared events that folds back into the active set at start, plus
// the list of series watched for silence. Rewritten compactly when it grows.
//
// Events are written synchronously (to the page cache: microseconds, and
// alerts are rare next to readings) before they are delivered, so a process
// crash can never lose an event that was delivered. fdatasync follows in the
// background: waiting for it before delivery cost hundreds of milliseconds of
// alert latency under ingest load (bench), and only a power loss can undo a
// write that reached the page cache.

type SeenSeries = { building: string; floor: string; room: string; sensorType: string };

interface Line {
  readonly k: ActiveAlert['kind'];
  readonly e: AlertEvent;
}

export class AlertJournal {
  private fd: number | null = null;
  private lines = 0;
  private lastActiveCount = 0;
  private dirty = false;
  private syncing: Promise<void> | null = null;

  private constructor(
    private readonly dir: string,
    private readonly sync: boolean,
    private readonly log: Logger,
  ) {}

  static async open(opts: {
    dataDir: string;
    sync: boolean;
    log: Logger;
  }): Promise<{ journal: AlertJournal; active: ActiveAlert[]; seen: SeenSeries[]; existed: boolean }> {
    const dir = join(opts.dataDir, 'alerts');
    await mkdirPrivate(dir);
    const j = new AlertJournal(dir, opts.sync, opts.log);
    const { active, existed } = await j.fold();
    let seen: SeenSeries[] = [];
    try {
      seen = JSON.parse(await readFileNoFollow(join(dir, 'seen.json'), 'utf8')) as SeenSeries[];
    } catch {
      // first start, or an unreadable file: offline detection starts from the first readings
    }
    j.rewrite(active);
    return { journal: j, active, seen, existed };
  }

  private get path(): string {
    return join(this.dir, 'journal.jsonl');
  }

  /** raised events add, cleared events (same id) remove; a torn last line is ignored */
  private async fold(): Promise<{ active: ActiveAlert[]; existed: boolean }> {
    let text: string;
    try {
      text = await readFileNoFollow(this.path, 'utf8');
    } catch (err) {
      // a planted link or another user's file stops start-up, named; a missing one is a first start
      if (err instanceof UnsafePathError) throw err;
      return { active: [], existed: false };
    }
    const byTopic = new Map<string, ActiveAlert>();
    const rows = text.split('\n');
    rows.forEach((row, i) => {
      if (!row) return;
      let line: Line;
      try {
        line = JSON.parse(row) as Line;
      } catch {
        if (i < rows.length - 1) this.log.warn({ line: i + 1 }, 'alert journal: unreadable line skipped');
        return;
      }
      const topic = alertTopic(line.e);
      if (line.e.state === 'raised') byTopic.set(topic, { kind: line.k, event: line.e });
      else if (byTopic.get(topic)?.event.id === line.e.id) byTopic.delete(topic);
    });
    return { active: [...byTopic.values()], existed: true };
  }

  /** the active set as a fresh journal (write, rename: a crash leaves the old or the new one) */
  private rewrite(active: readonly ActiveAlert[]): void {
    // 0600 whatever the umask, never written through a planted link
    writeFileAtomicPrivateSync(this.path, active.map(serialize).join(''));
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null; // a refused open (a link planted meanwhile) must not leave the closed descriptor here
    this.fd = openNoFollowSync(this.path, 'a');
    this.lines = active.length;
    this.lastActiveCount = active.length;
  }

  /** Replace the journal by this active set (after a restore from Redis: the journal must know it too). */
  replaceWith(active: readonly ActiveAlert[]): void {
    this.rewrite(active);
  }

  /** Append events; they are in the file (page cache) when this returns. */
  append(events: readonly ActiveAlert[]): void {
    if (this.fd === null) return; // closed: shutting down
    const text = Buffer.from(events.map(serialize).join(''));
    try {
      let off = 0;
      while (off < text.length) off += writeSync(this.fd!, text, off);
      this.lines += events.length;
    } catch (err) {
      // The alert is still delivered: a lost journal line costs at worst one repeat after a crash.
      this.log.error({ err }, 'alert journal write failed');
      return;
    }
    if (this.sync) {
      this.dirty = true;
      this.syncing ??= this.syncLoop();
    }
  }

  /** one fdatasync at a time, covering every append made before it started */
  private async syncLoop(): Promise<void> {
    while (this.dirty && this.fd !== null) {
      this.dirty = false;
      const fd = this.fd;
      await new Promise<void>((resolve) =>
        fdatasync(fd, (err) => {
          if (err) this.log.warn({ err }, 'alert journal fdatasync failed');
          resolve();
        }),
      );
    }
    this.syncing = null;
  }

  /** rewrite when mostly cleared episodes: keeps start-up reading short */
  compactIfLarge(active: () => readonly ActiveAlert[]): void {
    // cheap test first: listing the active set walks every series
    if (this.lines < 10_000 || this.lines < this.lastActiveCount * 4) return;
    const now = active();
    this.lastActiveCount = now.length;
    if (this.lines < now.length * 4) return;
    try {
      this.rewrite(now);
    } catch (err) {
      this.log.error({ err }, 'alert journal compaction failed');
    }
  }

  async saveSeen(seen: readonly SeenSeries[]): Promise<void> {
    await writeFileAtomicPrivate(join(this.dir, 'seen.json'), JSON.stringify(seen));
  }

  async close(): Promise<void> {
    await this.syncing;
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

function serialize(a: ActiveAlert): string {
  return `${JSON.stringify({ k: a.kind, e: a.event } satisfies Line)}\n`;
}
