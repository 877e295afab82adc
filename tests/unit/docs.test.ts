import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configTable } from '../../src/config/doc.js';
import { ERROR_CODES } from '../../src/errors.js';
import { REJECT_REASONS } from '../../src/ingest/reading.js';

const ROOT = join(import.meta.dirname, '..', '..');
const read = (p: string) => readFileSync(join(ROOT, p), 'utf8');

describe('documentation stays true', () => {
  it('docs/configuration.md holds the table generated from the schema', () => {
    expect(read('docs/configuration.md')).toContain(configTable());
  });
  it('docs/errors.md lists every error code with its message', () => {
    const doc = read('docs/errors.md');
    for (const [code, message] of Object.entries(ERROR_CODES))
      expect(doc).toContain(`| \`${code}\` | ${message} |`);
  });
  it('the README names every rejection reason', () => {
    const readme = read('README.md');
    for (const r of REJECT_REASONS) expect(readme).toContain(`\`${r}\``);
  });
  it('the README opens with the two commands, and CI runs the same test command', () => {
    const blocks = read('README.md').match(/```sh\n([\s\S]*?)```/);
    expect(blocks?.[1]?.trim().split('\n')).toEqual(['npm ci && npm start', 'npm ci && npm test']);
    expect(read('.ci/run')).toMatch(/^npm ci --no-audit --no-fund\nnpm test$/m);
  });
});
