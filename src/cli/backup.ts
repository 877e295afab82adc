import { PARTS, runBackup, runRestore } from '../backup/run.js';
import type { Config } from '../config/types.js';
import { IngestError } from '../errors.js';

/** `energy-ingest backup --to DIR|s3://BUCKET/PREFIX`: progress lines on stdout, the set's name last. */
export async function cliBackup(cfg: Config, to: string, print: (line: string) => void): Promise<void> {
  const r = await runBackup(cfg, to, (line) => print(`${new Date().toISOString()} ${line}`));
  print(`backup set ${r.name} written to ${r.where}`);
}

/** `energy-ingest restore --from DIR|s3://BUCKET/PREFIX`: a set, or the newest complete set there. */
export async function cliRestore(
  cfg: Config,
  from: string,
  print: (line: string) => void,
  parts?: string,
): Promise<void> {
  const only = parts === undefined ? [...PARTS] : parts.split(',').map((p) => p.trim());
  const bad = only.find((p) => !(PARTS as readonly string[]).includes(p));
  if (bad !== undefined || !only.length)
    throw new IngestError(
      'EI_CLI_USAGE',
      `option --parts must list some of ${PARTS.join(', ')} (got "${parts}")`,
    );
  const r = await runRestore(cfg, from, (line) => print(`${new Date().toISOString()} ${line}`), only);
  print(`restored ${r.name}`);
}
