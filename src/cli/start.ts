import { App } from '../app.js';
import type { Config } from '../config/types.js';
import { createLogger } from '../log.js';

/** Run until SIGTERM/SIGINT; a second signal exits at once. */
export async function runStart(cfg: Config): Promise<void> {
  const log = createLogger(cfg.log.level, undefined, cfg.log.pretty);
  const app = new App(cfg, log);
  try {
    await app.start();
  } catch (err) {
    log.fatal({ err }, 'start-up failed');
    await app.stop().catch(() => {});
    throw err;
  }
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(130);
    }
    stopping = true;
    log.info({ signal }, 'stopping');
    app.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}
