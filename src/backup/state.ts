import { copyFile, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

// The daemon's own state under DATA_DIR that is not in any database: the
// alert journal (active alerts survive a restart through it), the series
// watched for silence, and the last good metadata snapshot (used while
// PostgreSQL is unreachable). Not the durable log (its unsent readings belong
// to that node: `energy-ingest drain`) nor the instance id (a restored node
// is a new instance).
export const STATE_FILES = ['alerts/journal.jsonl', 'alerts/seen.json', 'metadata.json'] as const;

export interface StatePart {
  files: string[];
}

export async function dumpState(
  dataDir: string,
  dir: string,
  progress: (line: string) => void,
): Promise<StatePart> {
  const files: string[] = [];
  for (const rel of STATE_FILES) {
    let text: string;
    try {
      text = await readFile(join(dataDir, rel), 'utf8');
    } catch {
      continue; // not there yet (no alert so far, no PostgreSQL)
    }
    // the journal is appended to while we read: complete lines only
    if (rel.endsWith('.jsonl')) text = text.slice(0, text.lastIndexOf('\n') + 1);
    const to = join(dir, 'state', rel);
    await mkdir(dirname(to), { recursive: true, mode: 0o700 });
    await writeFile(to, text, { mode: 0o600 });
    files.push(`state/${rel}`);
  }
  progress(`state: ${files.length} files`);
  return { files };
}

/**
 * Files back into DATA_DIR, each replaced atomically (write, rename). A
 * running daemon keeps its state in memory and rewrites these files: restore
 * the state part with the daemon stopped (README, "Backup and restore").
 */
export async function restoreState(
  dataDir: string,
  dir: string,
  part: StatePart,
  progress: (line: string) => void,
): Promise<number> {
  for (const f of part.files) {
    const rel = f.replace(/^state\//, '');
    if (!(STATE_FILES as readonly string[]).includes(rel)) continue;
    const to = join(dataDir, rel);
    await mkdir(dirname(to), { recursive: true, mode: 0o700 });
    await copyFile(join(dir, f), `${to}.restore.tmp`);
    await rename(`${to}.restore.tmp`, to);
  }
  progress(`state: ${part.files.length} files restored to ${dataDir}`);
  return part.files.length;
}
