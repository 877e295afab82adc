import type { FileHandle } from 'node:fs/promises';
import { mkdir, open, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { type ActiveAlert, type AlertEvent, alertTopic } from './evaluator.js';

// The alert state file under {DATA_DIR}/alerts: an append-only journal of
// raised/cleared events (group-committed, fdatasync'd before the events are
// delivered) that folds back into the active set at start, plus the list of
// series watched for silence. Rewritten compactly when it grows.

type SeenSeries = { building: string; floor: string; room: string; sensorType: string };

interface Line {
  readonly k: ActiveAlert['kind'];
  readonly e: AlertEvent;
}

export class AlertJournal {
  private fh: FileHandle | null = null;
  private pending: string[] = [];
  private waiters: Array<() => void> = [];
  private writing: Promise<void> | null = null;
  private lines = 0;
  private compactWith: readonly ActiveAlert[] | null = null;

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
    await mkdir(dir, { recursive: true });
    const j = new AlertJournal(dir, opts.sync, opts.log);
    const { active, existed } = await j.fold();
    let seen: SeenSeries[] = [];
    try {
      seen = JSON.parse(await readFile(join(dir, 'seen.json'), 'utf8')) as SeenSeries[];
    } catch {
      // first start, or an unreadable file: offline detection starts from the first readings
    }
    await j.rewrite(active);
    return { journal: j, active, seen, existed };
  }

  private get path(): string {
    return join(this.dir, 'journal.jsonl');
  }

  /** raised events add, cleared events (same id) remove; a torn last line is ignored */
  private async fold(): Promise<{ active: ActiveAlert[]; existed: boolean }> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch {
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

  /** the active set as a fresh journal, atomically */
  private async rewrite(active: readonly ActiveAlert[]): Promise<void> {
    const tmp = `${this.path}.tmp`;
    const text = active.map((a) => `${JSON.stringify({ k: a.kind, e: a.event } satisfies Line)}\n`).join('');
    await writeFile(tmp, text, { mode: 0o600 });
    const fh = await open(tmp, 'r+');
    await fh.datasync();
    await fh.close();
    await this.fh?.close();
    await rename(tmp, this.path);
    this.fh = await open(this.path, 'a', 0o600);
    this.lines = active.length;
  }

  /**
   * Append events; resolves once they are on disk. Concurrent calls share one
   * write + fdatasync (group commit), so a burst of alerts costs one sync.
   */
  append(events: ReadonlyArray<{ kind: ActiveAlert['kind']; event: AlertEvent }>): Promise<void> {
    for (const a of events)
      this.pending.push(`${JSON.stringify({ k: a.kind, e: a.event } satisfies Line)}\n`);
    const done = new Promise<void>((resolve) => this.waiters.push(resolve));
    this.writing ??= this.flushLoop();
    return done;
  }

  private async flushLoop(): Promise<void> {
    while (this.pending.length || this.compactWith) {
      if (this.compactWith) {
        // Lines still pending are newer than nothing in the snapshot: folding them again is harmless.
        const active = this.compactWith;
        this.compactWith = null;
        await this.rewrite(active).catch((err: unknown) =>
          this.log.error({ err }, 'alert journal compaction failed'),
        );
        continue;
      }
      const batch = this.pending.join('');
      const count = this.pending.length;
      const waiters = this.waiters;
      this.pending = [];
      this.waiters = [];
      try {
        await this.fh!.write(batch);
        if (this.sync) await this.fh!.datasync();
        this.lines += count;
      } catch (err) {
        // The alert is still delivered: a lost journal line costs at worst one repeat after a crash.
        this.log.error({ err }, 'alert journal write failed');
      }
      for (const w of waiters) w();
    }
    this.writing = null;
  }

  /** rewrite when mostly cleared episodes, between two appends: keeps start-up reading short */
  compactIfLarge(active: readonly ActiveAlert[]): void {
    if (this.lines < 10_000 || this.lines < active.length * 4) return;
    this.compactWith = active;
    this.writing ??= this.flushLoop();
  }

  async saveSeen(seen: readonly SeenSeries[]): Promise<void> {
    const tmp = join(this.dir, 'seen.json.tmp');
    await writeFile(tmp, JSON.stringify(seen), { mode: 0o600 });
    await rename(tmp, join(this.dir, 'seen.json'));
  }

  async close(): Promise<void> {
    await this.writing;
    await this.fh?.close();
    this.fh = null;
  }
}
