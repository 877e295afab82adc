// first: the libraries loaded below make their debug loggers at load time
import '../quietDebug.js';
import { loadConfig, redactedConfig } from '../config/load.js';
import { IngestError } from '../errors.js';
import { type OptionSpec, parseArgs } from './args.js';
import { runCheck } from './check.js';
import { runStart } from './start.js';

const USAGE = `usage: energy-ingest <command> [--config PATH]
commands:
  start       run the daemon until SIGTERM/SIGINT
  simulate    sensor simulator (energy-ingest simulate --help)
  check       test every configured service
  migrate     create or update the PostgreSQL schema (idempotent)
  passwd      create or update an MQTT credential (password on stdin)
  config      print the effective configuration (secrets redacted)
  backup      energy-ingest backup --to DIR|s3://BUCKET/PREFIX (one timestamped set)
  restore     energy-ingest restore --from DIR|s3://BUCKET/PREFIX [--parts postgres,influx,redis,state]
  forecast    compute the energy forecasts now ([--building ID]; needs DATABASE_URL and REDIS_URL)
  drain       send the unsent log of another DATA_DIR to the sink (energy-ingest drain --data-dir DIR)`;

const COMMON = { config: { kind: 'string' }, help: { kind: 'flag' } } as const;

/** Entry of the bin. Usage errors and bad configuration exit 2 with one line naming the culprit. */
export async function main(argv: readonly string[]): Promise<void> {
  const [command, ...rest] = argv;
  try {
    if (command === undefined || command === 'help' || command === '--help') {
      console.log(USAGE);
      return;
    }
    const run = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
    if (!run) throw new IngestError('EI_CLI_USAGE', `unknown command "${command}" (try: energy-ingest help)`);
    await run(rest);
  } catch (err) {
    if (
      err instanceof IngestError &&
      ['EI_CLI_USAGE', 'EI_CONFIG_INVALID', 'EI_CONFIG_UNREADABLE'].includes(err.code)
    ) {
      console.error(`energy-ingest: ${err.message}`);
      process.exitCode = 2;
      return;
    }
    // an unsafe DATA_DIR is a bad value the operator must fix (contract: exit 2, naming the culprit)
    if (err instanceof IngestError && err.code === 'EI_DATA_DIR_UNSAFE') {
      console.error(`energy-ingest: ${err.code}: ${err.message}`);
      process.exitCode = 2;
      return;
    }
    if (err instanceof IngestError) {
      console.error(`energy-ingest: ${err.code}: ${err.message}`);
      process.exitCode = 1;
      return;
    }
    throw err;
  }
}

function noPositional(positional: string[]): void {
  if (positional.length) throw new IngestError('EI_CLI_USAGE', `unexpected argument "${positional[0]}"`);
}

/** every command, by name (contract section 1) */
const COMMANDS: Record<string, (rest: readonly string[]) => Promise<void>> = {
  start: cmdStart,
  check: cmdCheck,
  config: cmdConfig,
  migrate: cmdMigrate,
  passwd: cmdPasswd,
  backup: (rest) => cmdBackupRestore(rest, 'backup'),
  restore: (rest) => cmdBackupRestore(rest, 'restore'),
  forecast: cmdForecast,
  simulate: cmdSimulate,
  drain: cmdDrain,
};

async function cmdStart(rest: readonly string[]): Promise<void> {
  const args = parseArgs(rest, COMMON);
  if (args.options.help) return void console.log('usage: energy-ingest start [--config PATH]');
  noPositional(args.positional);
  const cfg = loadConfig({ configPath: args.options.config as string | undefined, env: process.env });
  await runStart(cfg);
}

async function cmdCheck(rest: readonly string[]): Promise<void> {
  const args = parseArgs(rest, COMMON);
  noPositional(args.positional);
  const cfg = loadConfig({ configPath: args.options.config as string | undefined, env: process.env });
  process.exitCode = await runCheck(cfg, (line) => console.log(line));
}

async function cmdConfig(rest: readonly string[]): Promise<void> {
  const args = parseArgs(rest, COMMON);
  noPositional(args.positional);
  const cfg = loadConfig({ configPath: args.options.config as string | undefined, env: process.env });
  const { stringify } = await import('yaml');
  process.stdout.write(stringify(redactedConfig(cfg)));
}

async function cmdMigrate(rest: readonly string[]): Promise<void> {
  const args = parseArgs(rest, COMMON);
  noPositional(args.positional);
  const cfg = loadConfig({ configPath: args.options.config as string | undefined, env: process.env });
  if (!cfg.postgres.url) throw new IngestError('EI_CLI_USAGE', 'migrate needs DATABASE_URL (postgres.url)');
  const { migrate } = await import('../metadata/migrations.js');
  const r = await migrate(cfg.postgres.url, (line) => console.log(line));
  console.log(
    r.applied.length
      ? `schema at version ${r.current} (${r.applied.length} applied)`
      : `schema at version ${r.current}: nothing to do`,
  );
}

async function cmdPasswd(rest: readonly string[]): Promise<void> {
  const args = parseArgs(rest, {
    ...COMMON,
    role: { kind: 'string', values: ['sensor', 'dashboard', 'admin'] },
    building: { kind: 'int', min: 1 },
  });
  const [username, ...extra] = args.positional;
  if (!username)
    throw new IngestError(
      'EI_CLI_USAGE',
      'usage: energy-ingest passwd USERNAME [--role sensor|dashboard|admin] [--building ID] (password on stdin)',
    );
  noPositional(extra);
  const cfg = loadConfig({ configPath: args.options.config as string | undefined, env: process.env });
  if (!cfg.postgres.url) throw new IngestError('EI_CLI_USAGE', 'passwd needs DATABASE_URL (postgres.url)');
  const { runPasswd } = await import('./passwd.js');
  console.log(
    await runPasswd(cfg.postgres.url, {
      username,
      // absent: an existing device keeps its role and building (a new one: sensor, every building)
      role: args.options.role as string | undefined,
      buildingId: args.options.building as number | undefined,
    }),
  );
}

async function cmdBackupRestore(rest: readonly string[], command: string): Promise<void> {
  const flag = command === 'backup' ? 'to' : 'from';
  const specs: Record<string, OptionSpec> = { ...COMMON, [flag]: { kind: 'string' } };
  if (command === 'restore') specs.parts = { kind: 'string' };
  const args = parseArgs(rest, specs);
  noPositional(args.positional);
  const where = args.options[flag] as string | undefined;
  if (!where)
    throw new IngestError(
      'EI_CLI_USAGE',
      `usage: energy-ingest ${command} --${flag} DIR|s3://BUCKET/PREFIX${command === 'restore' ? ' [--parts postgres,influx,redis,state]' : ''}`,
    );
  const cfg = loadConfig({ configPath: args.options.config as string | undefined, env: process.env });
  const { cliBackup, cliRestore } = await import('./backup.js');
  const print = (line: string) => console.log(line);
  if (command === 'backup') await cliBackup(cfg, where, print);
  else await cliRestore(cfg, where, print, args.options.parts as string | undefined);
}

async function cmdForecast(rest: readonly string[]): Promise<void> {
  const args = parseArgs(rest, { ...COMMON, building: { kind: 'string' } });
  if (args.options.help)
    return void console.log('usage: energy-ingest forecast [--building ID] [--config PATH]');
  noPositional(args.positional);
  const cfg = loadConfig({ configPath: args.options.config as string | undefined, env: process.env });
  const { runForecastCommand } = await import('./forecast.js');
  process.exitCode = await runForecastCommand(cfg, args.options.building as string | undefined, (line) =>
    console.log(line),
  );
}

async function cmdSimulate(rest: readonly string[]): Promise<void> {
  const { runSimulate } = await import('../../simulators/simulate.js');
  process.exitCode = await runSimulate(rest);
}

async function cmdDrain(rest: readonly string[]): Promise<void> {
  const args = parseArgs(rest, {
    ...COMMON,
    'data-dir': { kind: 'string' },
    'give-up-after': { kind: 'int', min: 1, max: 86400 },
  });
  const usage = 'usage: energy-ingest drain --data-dir DIR [--give-up-after SECONDS] [--config PATH]';
  if (args.options.help) return void console.log(usage);
  noPositional(args.positional);
  const dir = args.options['data-dir'] as string | undefined;
  if (!dir) throw new IngestError('EI_CLI_USAGE', usage);
  const cfg = loadConfig({ configPath: args.options.config as string | undefined, env: process.env });
  const { runDrain } = await import('./drain.js');
  const giveUpS = args.options['give-up-after'] as number | undefined;
  await runDrain(cfg, dir, (line) => console.log(line), giveUpS === undefined ? undefined : giveUpS * 1000);
}
