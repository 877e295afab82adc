import type { Logger } from 'pino';

// After an outage the backlog drains from the durable log: say how it goes,
// every few seconds, with the rate and the time left, and once when it is done.
// Silent while the sink is down (the writer reports that) and in normal running.

export interface DrainSource {
  /** bytes of the log not yet written */
  readonly bytesBehind: number;
  readonly pointsWritten: number;
  /** true while writes are failing: nothing drains, nothing to report */
  readonly failing: boolean;
}

/** below this the pipeline is simply keeping up */
const THRESHOLD_BYTES = 4 * 1024 * 1024;

export class DrainProgress {
  private last: { at: number; behind: number; points: number } | null = null;
  private started: { at: number; points: number } | null = null;

  constructor(
    private readonly source: DrainSource,
    private readonly log: Logger,
  ) {}

  /** call every few seconds */
  sample(now = Date.now()): void {
    const { bytesBehind: behind, pointsWritten: points, failing } = this.source;
    const prev = this.last;
    this.last = { at: now, behind, points };
    if (failing || !prev) return;
    if (behind < THRESHOLD_BYTES) {
      if (this.started) {
        this.log.info(
          { durationS: Math.round((now - this.started.at) / 1000), points: points - this.started.points },
          'backlog drained',
        );
        this.started = null;
      }
      return;
    }
    const dt = (now - prev.at) / 1000;
    const bytesPerS = (prev.behind - behind) / dt;
    if (bytesPerS <= 0) return;
    this.started ??= { at: prev.at, points: prev.points };
    this.log.info(
      {
        behindMiB: Math.round(behind / 1048576),
        pointsPerS: Math.round((points - prev.points) / dt),
        etaS: Math.round(behind / bytesPerS),
      },
      'draining backlog',
    );
  }
}
