import cron, { type ScheduledTask } from 'node-cron';
import type { Logger } from 'pino';

// Every periodic job of the node in one place, by name, with its schedule and
// its last run, so /api/status can show what runs when (Telegraf's agent keeps
// its tickers together for the same reason). A job that throws is logged and
// counted; it never stops the schedule or the process. Jobs never overlap
// themselves: a tick that finds the previous run still going is skipped.

export interface JobStatus {
  readonly name: string;
  /** "every 5000 ms" or a cron expression */
  readonly schedule: string;
  readonly runs: number;
  readonly failures: number;
  readonly skipped: number;
  readonly last_run_at: string | null;
  readonly last_error: string | null;
}

interface Job {
  readonly name: string;
  readonly schedule: string;
  readonly run: () => unknown;
  runs: number;
  failures: number;
  skipped: number;
  lastRunAt: number | null;
  lastError: string | null;
  running: boolean;
  stop(): void;
}

export class Scheduler {
  private readonly jobs = new Map<string, Job>();

  constructor(private readonly log: Logger) {}

  /** run `fn` every `ms` milliseconds (timers unref'd: a job never keeps the process alive) */
  every(name: string, ms: number, fn: () => unknown): void {
    const job = this.add(name, `every ${ms} ms`, fn);
    const timer = setInterval(() => this.tick(job), ms);
    timer.unref();
    job.stop = () => clearInterval(timer);
  }

  /** run `fn` on a node-cron schedule (seconds field allowed) */
  cron(name: string, expression: string, fn: () => unknown): void {
    const job = this.add(name, expression, fn);
    const task: ScheduledTask = cron.schedule(expression, () => this.tick(job), { name });
    job.stop = () => void task.stop();
  }

  /** run a job now, outside its schedule (skipped when it is already running) */
  runNow(name: string): Promise<void> {
    const job = this.jobs.get(name);
    return job ? this.tick(job) : Promise.resolve();
  }

  list(): JobStatus[] {
    return [...this.jobs.values()].map((j) => ({
      name: j.name,
      schedule: j.schedule,
      runs: j.runs,
      failures: j.failures,
      skipped: j.skipped,
      last_run_at: j.lastRunAt === null ? null : new Date(j.lastRunAt).toISOString(),
      last_error: j.lastError,
    }));
  }

  /** stop one job (its component stops) or, without a name, all of them */
  stop(name?: string): void {
    for (const j of name === undefined ? [...this.jobs.values()] : [this.jobs.get(name)]) {
      if (!j) continue;
      j.stop();
      this.jobs.delete(j.name);
    }
  }

  private add(name: string, schedule: string, run: () => unknown): Job {
    this.stop(name); // a component restarted registers its job again
    const job: Job = {
      name,
      schedule,
      run,
      runs: 0,
      failures: 0,
      skipped: 0,
      lastRunAt: null,
      lastError: null,
      running: false,
      stop: () => {},
    };
    this.jobs.set(name, job);
    return job;
  }

  private async tick(job: Job): Promise<void> {
    if (job.running) {
      job.skipped++;
      return;
    }
    job.running = true;
    job.lastRunAt = Date.now();
    job.runs++;
    try {
      await job.run();
      job.lastError = null;
    } catch (err) {
      job.failures++;
      job.lastError = (err as Error)?.message ?? String(err);
      this.log.warn({ job: job.name, err: job.lastError }, 'periodic job failed');
    } finally {
      job.running = false;
    }
  }
}
