import { join } from 'node:path';
import { appendFileNoFollow, checkDataDir, mkdirPrivate } from '../safeFs.js';
import type { Sink, WriteResult } from './sink.js';

/**
 * The zero-config sink: line protocol appended to {dataDir}/readings/YYYY-MM-DD.lp
 * (UTC date of the write), loadable with `influx write --precision ms`.
 */
const NEWLINE = Buffer.from('\n');

export class FileSink implements Sink {
  readonly name = 'file';
  readonly backslashMode = 'escape' as const;
  /** files are read line by line (tail, grep, Telegraf's tail input): no raw line breaks */
  readonly newlines = 'escape' as const;
  private readonly dir: string;
  private readonly dataDir: string;
  /** one append at a time: concurrent appends of large batches could interleave their lines */
  private tail: Promise<unknown> = Promise.resolve();

  constructor(dataDir: string) {
    this.dataDir = dataDir;
    this.dir = join(dataDir, 'readings');
  }

  /** DATA_DIR checked (also for `energy-ingest check`, which runs no App), readings/ made 0700 */
  private async prepare(): Promise<void> {
    await checkDataDir(this.dataDir);
    await mkdirPrivate(this.dir);
  }

  async connect(): Promise<void> {
    await this.prepare();
  }

  pathFor(now = new Date()): string {
    return join(this.dir, `${now.toISOString().slice(0, 10)}.lp`);
  }

  write(body: Buffer): Promise<WriteResult> {
    const done = this.tail.then(async (): Promise<WriteResult> => {
      try {
        // never through a planted link; a refusal is kept and retried like a full disk, and logged
        await appendFileNoFollow(this.pathFor(), Buffer.concat([body, NEWLINE]));
        return { kind: 'ok' };
      } catch (err) {
        // A full or read-only disk may recover: keep the batch.
        return { kind: 'retry', message: (err as Error).message };
      }
    });
    this.tail = done;
    return done;
  }

  /**
   * Cheap writability check (the writer's probe while appends fail): opening
   * today's file for append needs a free descriptor and write permission, and
   * an empty append writes nothing.
   */
  async ping(): Promise<void> {
    await this.prepare();
    await appendFileNoFollow(this.pathFor(), '');
  }

  async close(): Promise<void> {}
}
