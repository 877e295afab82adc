import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import '../../src/app.js';
import { debugLogger } from '../../src/quietDebug.js';

// Issue 15: a disabled `debug` logger cost mqtt-packet's parser ~0.7 µs per
// PUBLISH (an argument array and a getter per call, a dozen calls). Importing
// the app swaps the loggers of disabled namespaces for functions that do nothing.

const require = createRequire(import.meta.url);

describe('quiet debug loggers', () => {
  it('is in place once the app is loaded, for the libraries that require debug after it', () => {
    const debug = require('debug') as { quiet?: boolean };
    expect(debug.quiet).toBe(true);
  });

  it('a disabled namespace gets a logger that does nothing, with the shape libraries use', () => {
    const log = debugLogger('energy-ingest-test:off') as ((...a: unknown[]) => void) & {
      enabled: boolean;
      namespace: string;
      extend(s: string): { namespace: string; enabled: boolean };
    };
    expect(log.enabled).toBe(false);
    expect(log.namespace).toBe('energy-ingest-test:off');
    expect(log('%o', { a: 1 })).toBeUndefined();
    const sub = log.extend('sub');
    expect([sub.namespace, sub.enabled]).toEqual(['energy-ingest-test:off:sub', false]);
  });

  it('an enabled namespace (DEBUG=...) still gets the real logger, and enable/disable still work', () => {
    const debug = require('debug') as {
      enable(ns: string): void;
      disable(): string;
      enabled(ns: string): boolean;
    };
    const before = debug.disable();
    try {
      debug.enable('energy-ingest-test:on');
      expect(debug.enabled('energy-ingest-test:on')).toBe(true);
      const log = debugLogger('energy-ingest-test:on') as { enabled: boolean; namespace: string };
      expect(log.enabled).toBe(true);
      expect(log.namespace).toBe('energy-ingest-test:on');
      expect((debugLogger('energy-ingest-test:other') as { enabled: boolean }).enabled).toBe(false);
    } finally {
      debug.disable();
      if (before) debug.enable(before);
    }
  });
});
