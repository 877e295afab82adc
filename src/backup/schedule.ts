import cron, { type ScheduledTask } from 'node-cron';
import type { Logger } from 'pino';
import type { Config } from '../config/types.js';
import { runBackup } from './run.js';

/**
 * `backup.cron`: backups to `backup.to` from inside the daemon, never two at
 * once (a run longer than the interval skips the next tick), each followed by
 * pruning to `backup.keep`. A failed run is logged and counted; the daemon
 * goes on ingesting.
 */
export class BackupSchedule {
  private task: ScheduledTask | null = null;
  private running: Promise<void> | null = null;

  constructor(
    private readonly cfg: Config,
    private readonly log: Logger,
    private readonly onResult: (ok: boolean) => void = () => {},
  ) {}

  start(): void {
    const { cron: expr, to } = this.cfg.backup;
    if (!expr || !to) return;
    this.task = cron.schedule(expr, () => this.runOnce(), { noOverlap: true, name: 'backup' });
    this.log.info({ cron: expr, keep: this.cfg.backup.keep }, 'scheduled backups on');
  }

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

  async stop(): Promise<void> {
    await this.task?.stop();
    this.task = null;
  }
}
