import { runBackup, runRestore } from '../backup/run.js';
import type { Config } from '../config/types.js';

/** `energy-ingest backup --to DIR|s3://BUCKET/PREFIX`: progress lines on stdout, the set's name last. */
export async function cliBackup(cfg: Config, to: string, print: (line: string) => void): Promise<void> {
  const r = await runBackup(cfg, to, (line) => print(`${new Date().toISOString()} ${line}`));
  print(`backup set ${r.name} written to ${r.where}`);
}

/** `energy-ingest restore --from DIR|s3://BUCKET/PREFIX`: a set, or the newest complete set there. */
export async function cliRestore(cfg: Config, from: string, print: (line: string) => void): Promise<void> {
  const r = await runRestore(cfg, from, (line) => print(`${new Date().toISOString()} ${line}`));
  print(`restored ${r.name}`);
}
