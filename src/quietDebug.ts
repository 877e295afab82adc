import { createRequire } from 'node:module';

/*
 * The `debug` loggers of our dependencies, for namespaces that are off, as
 * functions that do nothing (issue 15). mqtt-packet's parser calls its logger
 * about a dozen times per PUBLISH; each call of a disabled `debug` logger
 * still gathers its arguments into a fresh array and asks a getter whether it
 * is enabled: 0.6-0.7 µs per reading at 20,000 readings/s (bench/README.md),
 * as much as all our validation. `DEBUG=mqtt-packet:*` and the like still
 * work: a namespace that is on when its logger is made gets the real one.
 * Must run before those libraries are first loaded (the first import of
 * src/app.ts and of the CLI); loggers made earlier are unchanged.
 */
type Debug = ((namespace: string) => unknown) & { enabled(namespace: string): boolean };

const require = createRequire(import.meta.url);
const id = require.resolve('debug');
const real = require(id) as Debug;
const cached = require.cache[id];

if (cached && !(real as { quiet?: boolean }).quiet) {
  const quiet = ((namespace: string) => {
    if (real.enabled(namespace)) return real(namespace);
    // no parameters: the callers' arguments are never gathered into an array
    const off = (): void => {};
    return Object.assign(off, {
      namespace,
      enabled: false,
      extend: (sub: string, delimiter = ':') => quiet(`${namespace}${delimiter}${sub}`),
      destroy: () => true,
      log: () => {},
    });
  }) as Debug & { quiet: boolean };
  // everything else (enable, disable, formatters, ...) is the real module's
  for (const key of Object.getOwnPropertyNames(real)) {
    if (key in quiet) continue;
    Object.defineProperty(quiet, key, {
      get: () => (real as unknown as Record<string, unknown>)[key],
      set: (v: unknown) => {
        (real as unknown as Record<string, unknown>)[key] = v;
      },
    });
  }
  quiet.quiet = true;
  cached.exports = quiet;
}

/** A logger as a library would make it (for tests). */
export function debugLogger(namespace: string): unknown {
  return (require(id) as Debug)(namespace);
}
