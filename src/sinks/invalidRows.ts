// VictoriaMetrics answers 204 to a write whose lines it cannot parse: it skips
// them and only counts them in vm_rows_invalid_total{type="influx"} on its
// /metrics (issue 12 item 1: a forged line was stored, the reading it hid was
// lost, and energy-ingest counted it as written). This watch reads that counter
// now and then and reports what it gained, so a silent rejection shows up as
// energy_ingest_sink_rows_invalid_total and a warning. The counter is the
// server's, for every client that writes to it: with other writers the figure
// is an upper bound of ours. Kept apart from the sinks: it never touches a write.

const INVALID = /^vm_rows_invalid_total\{type="influx"\} (\d+(?:\.\d+)?(?:e\+?\d+)?)$/m;

/** The server's count of line-protocol rows it dropped, or undefined when it exposes none. */
export async function readRowsInvalid(url: string, timeoutMs: number): Promise<number | undefined> {
  const res = await fetch(`${url.replace(/\/+$/, '')}/metrics`, { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) {
    await res.body?.cancel();
    return undefined;
  }
  const m = INVALID.exec(await res.text());
  return m ? Number(m[1]) : undefined;
}

export interface InvalidRowsWatchOptions {
  readonly url: string;
  readonly timeoutMs: number;
  /** rows the server counted invalid since the last check */
  readonly onInvalid: (rows: number, total: number) => void;
}

export class InvalidRowsWatch {
  /** the counter at the previous check; undefined until the server has answered once */
  private last: number | undefined;
  private running = false;

  constructor(private readonly opts: InvalidRowsWatchOptions) {}

  /** One reading of the counter (run by the scheduler); unreachable servers and servers without it are skipped quietly. */
  async check(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      const now = await readRowsInvalid(this.opts.url, this.opts.timeoutMs).catch(() => undefined);
      if (now === undefined) return;
      // a restarted server starts again from 0: count from there
      if (this.last !== undefined && now > this.last) this.opts.onInvalid(now - this.last, now);
      this.last = now;
    } finally {
      this.running = false;
    }
  }
}
