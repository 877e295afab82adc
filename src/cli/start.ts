import { App } from '../app.js';
import type { Config } from '../config/types.js';
import { createLogger } from '../log.js';

/** Run until SIGTERM/SIGINT; a second signal exits at once. */
export async function runStart(cfg: Config): Promise<void> {
  const log = createLogger(cfg.log.level, undefined, cfg.log.pretty);
  const app = new App(cfg, log);
  // Handlers before start: /health answers as soon as the HTTP part is up, so a
  // supervisor may already send SIGTERM while later parts are still starting;
  // that signal must stop the node cleanly, not kill it mid-start.
  let started: Promise<unknown> = Promise.resolve();
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(130);
    }
    stopping = true;
    log.info({ signal }, 'stopping');
    started
      .catch(() => {})
      .then(() => app.stop())
      .then(
        () => process.exit(0),
        (err: unknown) => {
          log.error({ err }, 'stop failed');
          process.exit(1);
        },
      );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  started = app.start();
  try {
    await started;
  } catch (err) {
    log.fatal({ err }, 'start-up failed');
    await app.stop().catch(() => {});
    throw err;
  }
}
