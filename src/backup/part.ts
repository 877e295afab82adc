import type { Component, NodeContext } from '../component.js';
import { BackupSchedule } from './schedule.js';

/** `backup.cron` (contract section 18): backups to `backup.to` from inside the daemon, on the scheduler. */
export class BackupPart implements Component {
  readonly name = 'backup';
  private schedule: BackupSchedule | null = null;

  constructor(private readonly ctx: NodeContext) {}

  start(): void {
    const { cfg, log, metrics, scheduler } = this.ctx;
    const { cron, to } = cfg.backup;
    if (!cron || !to) return;
    const schedule = new BackupSchedule(cfg, log, (ok) =>
      metrics.backups.inc({ result: ok ? 'ok' : 'failed' }),
    );
    this.schedule = schedule;
    scheduler.cron('backup', cron, () => schedule.runOnce());
    log.info({ cron, keep: cfg.backup.keep }, 'scheduled backups on');
  }

  /** a backup that is running goes on in the background until it ends; no new one starts */
  stop(): void {
    if (this.schedule) this.ctx.scheduler.stop('backup');
  }
}
