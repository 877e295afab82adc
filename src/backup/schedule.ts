import type { Logger } from 'pino';
import type { Config } from '../config/types.js';
import { runBackup } from './run.js';

/**
 * One scheduled backup to `backup.to` (run by the scheduler's "backup" job,
 * src/backup/part.ts), never two at once, each followed by
 * pruning to `backup.keep`. A failed run is logged and counted; the daemon
 * goes on ingesting.
 */
export class BackupSchedule {
  private running: Promise<void> | null = null;

  constructor(
    private readonly cfg: Config,
    private readonly log: Logger,
    private readonly onResult: (ok: boolean) => void = () => {},
  ) {}

  runOnce(): Promise<void> {
    this.running ??= runBackup(this.cfg, this.cfg.backup.to!, (line) =>
      this.log.info({ backup: line }, 'backup'),
    )
      .then(
        (r) => {
          this.log.info({ set: r.name, where: r.where, pruned: r.pruned.length }, 'backup done');
          this.onResult(true);
        },
        (err: unknown) => {
          this.log.error({ err: (err as Error).message }, 'backup failed');
          this.onResult(false);
        },
      )
      .finally(() => {
        this.running = null;
      });
    return this.running;
  }
}
