import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { expect, it } from 'vitest';

// Issue 13.2: the folders follow the data (broker → ingest → pipeline → sinks,
// side inputs and outputs in their own rooms) and no import runs back up the
// flow. This reads every import in src/ and names each one that does.

const SRC = resolve(import.meta.dirname, '../../src');

/** room → rooms it must never import from */
const FORBIDDEN: Record<string, readonly string[]> = {
  ingest: ['broker', 'pipeline', 'alerts', 'rollups', 'metadata', 'http', 'upstream'],
  pipeline: ['broker', 'alerts', 'rollups', 'metadata', 'http', 'upstream'],
  sinks: ['broker', 'ingest', 'pipeline', 'alerts', 'rollups', 'metadata', 'http', 'upstream'],
  metadata: ['broker', 'pipeline', 'sinks', 'alerts', 'rollups', 'http', 'upstream'],
  alerts: ['broker', 'pipeline', 'sinks', 'http', 'upstream'],
  rollups: ['broker', 'alerts', 'http', 'upstream'],
};
/** only the command line and the composition root may import these */
const ROOTS = ['app.ts', 'cli'];

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

function roomOf(path: string): string {
  const rel = relative(SRC, path);
  return rel.includes('/') ? rel.split('/')[0]! : rel;
}

it('no import runs back up the data flow', () => {
  const wrong: string[] = [];
  for (const file of files(SRC)) {
    const from = roomOf(file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/from '(\.{1,2}\/[^']+)\.js'/g)) {
      const target = resolve(dirname(file), `${m[1]}.ts`);
      const to = roomOf(target);
      if (to === from) continue;
      if (FORBIDDEN[from]?.includes(to)) wrong.push(`${relative(SRC, file)} → ${relative(SRC, target)}`);
      if (ROOTS.includes(to) && !ROOTS.includes(from))
        wrong.push(`${relative(SRC, file)} → ${relative(SRC, target)}`);
    }
  }
  expect(wrong).toEqual([]);
});
