import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { type Component, Lifecycle, nodeContext } from '../component.js';
import type { Config } from '../config/types.js';
import { DataDirLock } from '../dataDirLock.js';
import { IngestError } from '../errors.js';
import { createLogger } from '../log.js';
import { Metrics } from '../metrics.js';
import { logDir } from '../pipeline/durableLog.js';
import { DeadLetterPart, LogPart, PipelinePart } from '../pipeline/parts.js';
import { RollupsPart } from '../rollups/part.js';
import { ROLLUP_SINK } from '../rollups/sync.js';
import { checkDataDir } from '../safeFs.js';
import { Scheduler } from '../scheduler.js';
import { SinkPart } from '../sinks/part.js';

/*
 * `energy-ingest drain --data-dir DIR` (contract sections 1 and 7): the log of
 * a node that will not come back is sent to the configured sink by the same
 * parts a node uses (durable log → pipeline → writer → sink), so it resumes
 * from the sink's committed offset, batches, retries, bisects and dead-letters
 * exactly as the node would have on its next start. Nothing is sent twice that
 * the node had committed, and a drain interrupted half-way is simply run again.
 *
 * Roll-ups: with DATABASE_URL the roll-up part runs too, as the node's own
 * instance (DIR/instance-id): it counts only the records past the offset
 * PostgreSQL holds for that instance and stores rows and offset in one
 * transaction, so drain completes the node's roll-ups exactly once; it never
 * counts a record the node had already flushed. Without DATABASE_URL only the
 * reading sink is written.
 *
 * DIR is locked (DIR/daemon.lock) for the whole run: a directory a running
 * daemon holds is refused (EI_DATA_DIR_LOCKED), and a daemon cannot start on it
 * while it is being drained.
 */

/** writes failing this long without a success: drain gives up (exit 1); running it again resumes */
export const DRAIN_GIVE_UP_MS = 30_000;
const PROGRESS_MS = 2000;

export async function runDrain(
  cfg: Config,
  dirArg: string,
  print: (line: string) => void,
  giveUpMs = DRAIN_GIVE_UP_MS,
): Promise<void> {
  const dir = resolve(dirArg);
  if (!existsSync(dir) || !statSync(dir).isDirectory())
    throw new IngestError('EI_CLI_USAGE', `--data-dir ${dirArg}: no such directory`);
  if (!existsSync(logDir(dir)))
    throw new IngestError('EI_CLI_USAGE', `--data-dir ${dirArg}: holds no durable log (${logDir(dir)})`);
  // warn and up: the progress lines are the output; pino's JSON goes to stderr
  const log = createLogger(cfg.log.level === 'info' ? 'warn' : cfg.log.level, process.stderr, false);
  await checkDataDir(dir);
  const lock = new DataDirLock(dir, 'energy-ingest drain', (stale) =>
    print(`drain: ${dir} had a lock from a process that is gone (${stale}): taken over`),
  );
  await lock.acquire();
  const metrics = new Metrics();
  const scheduler = new Scheduler(log);
  // the sink is the configured one (a file sink under the configured DATA_DIR);
  // the log, its dead letter and its roll-up instance are DIR's
  const sinkCtx = nodeContext(cfg, log, metrics, scheduler);
  const dirCtx = nodeContext({ ...cfg, dataDir: dir }, log, metrics, scheduler);
  const deadLetter = new DeadLetterPart(dirCtx);
  const sink = new SinkPart(sinkCtx);
  const durable = new LogPart(dirCtx, [ROLLUP_SINK]);
  const rollups = new RollupsPart(dirCtx, durable, sink);
  const pipeline = new PipelinePart(dirCtx, sink, durable, deadLetter);
  const parts: Component[] = [deadLetter, sink, durable, rollups, pipeline];
  const lifecycle = new Lifecycle(parts, metrics, log);
  let failure: string | null = null;
  try {
    await lifecycle.start();
    const p = pipeline.pipeline;
    const total = p.bytesBehind;
    const startedAt = Date.now();
    print(
      total === 0
        ? `drain: ${dir}: nothing unsent`
        : `drain: ${dir}: ${total} bytes of log unsent, writing to ${sink.sink.name}`,
    );
    let lastPrint = Date.now();
    while (p.bytesBehind > 0 || p.backlog > 0) {
      const failingSince = pipeline.writer.failingSince;
      if (failingSince !== null && Date.now() - failingSince >= giveUpMs) {
        failure =
          `writes to ${sink.sink.name} failing for ${Math.round((Date.now() - failingSince) / 1000)} s ` +
          `(${pipeline.writer.lastError ?? 'no answer'}); ${p.bytesBehind} bytes of ${dir} still unsent, run drain again`;
        break;
      }
      await Promise.race([p.progress(), new Promise((r) => setTimeout(r, 500))]);
      if (Date.now() - lastPrint >= PROGRESS_MS) {
        lastPrint = Date.now();
        print(
          `drain: ${total - p.bytesBehind} of ${total} bytes written, ${metrics.pointsWritten.get()} points` +
            (pipeline.writer.failingSince !== null ? ` (writes failing: ${pipeline.writer.lastError})` : ''),
        );
      }
    }
    if (failure === null)
      print(
        `drain: done: ${metrics.pointsWritten.get()} points written in ${((Date.now() - startedAt) / 1000).toFixed(1)} s` +
          `, ${deadLetter.writer.written} refused lines dead-lettered under ${dir}/deadletter`,
      );
  } finally {
    await lifecycle.stop(Date.now() + cfg.pipeline.shutdownTimeoutMs);
    scheduler.stop();
    await lock.release();
  }
  if (failure === null && cfg.postgres.url && durable.log.committed(ROLLUP_SINK) < durable.log.endOffset)
    failure =
      'the readings are written but the roll-ups could not be flushed to PostgreSQL; ' +
      'run drain again (they are counted exactly once)';
  if (failure !== null) throw new IngestError('EI_DRAIN_INCOMPLETE', failure);
}
