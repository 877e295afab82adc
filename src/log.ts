import { type Logger, pino, stdSerializers } from 'pino';
import pretty from 'pino-pretty';
import { redactText } from './redact.js';

/** string values (a few levels deep) with every URL's password hidden; errors through pino's serializer first */
function scrub(v: unknown, depth = 0): unknown {
  if (typeof v === 'string') return redactText(v);
  if (depth > 3 || v === null || typeof v !== 'object' || v instanceof Error) return v;
  if (Array.isArray(v)) return v.map((x) => scrub(x, depth + 1));
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, scrub(x, depth + 1)]));
}

/**
 * pino JSON lines; human-readable ones (pino-pretty, in-process and
 * synchronous so nothing is lost at exit) when `pretty` is true, or when it
 * is unset and stdout is a terminal.
 */
export function createLogger(
  level: string,
  destination?: NodeJS.WritableStream,
  prettyOpt?: boolean,
): Logger {
  const usePretty = prettyOpt ?? (destination === undefined && process.stdout.isTTY === true);
  const dest = usePretty
    ? pretty({
        colorize: process.stdout.isTTY === true,
        sync: true,
        translateTime: 'SYS:HH:MM:ss.l',
        singleLine: true,
        ignore: 'pid,hostname,svc',
        destination: destination ?? 1,
      })
    : destination;
  return pino(
    {
      level,
      base: { svc: 'energy-ingest' },
      // Secrets never reach a log line, even when an error object carries them.
      redact: { paths: ['password', '*.password', 'token', '*.token', 'url', '*.url'], censor: '***' },
      // ...and no URL with a password inside a message or a field: Node's fetch repeats the whole
      // URL in its errors, pg and ioredis take ?password=
      serializers: { err: (e: Error) => scrub(stdSerializers.err(e)) },
      formatters: { log: (obj) => scrub(obj) as Record<string, unknown> },
      hooks: {
        logMethod(args, method) {
          method.apply(this, args.map((a) => (typeof a === 'string' ? redactText(a) : a)) as typeof args);
        },
      },
    },
    dest as Parameters<typeof pino>[1],
  );
}

/**
 * At most `perWindow` lines per key per window; the rest are counted and
 * reported with the next line that gets through. Keeps a flood of bad input
 * from turning into a flood of logs.
 */
export class RateLimitedLog {
  private readonly windows = new Map<string, { start: number; count: number; suppressed: number }>();

  constructor(
    private readonly log: Logger,
    private readonly perWindow = 5,
    private readonly windowMs = 10_000,
  ) {}

  warn(key: string, obj: Record<string, unknown>, msg: string): void {
    const now = Date.now();
    let w = this.windows.get(key);
    if (!w || now - w.start >= this.windowMs) {
      const suppressed = w?.suppressed ?? 0;
      w = { start: now, count: 0, suppressed: 0 };
      this.windows.set(key, w);
      if (suppressed) obj = { ...obj, suppressed };
    }
    if (w.count++ < this.perWindow) this.log.warn(obj, msg);
    else w.suppressed++;
  }
}
