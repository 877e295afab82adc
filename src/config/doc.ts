import { envName, fields } from './schema.js';

/** The configuration reference table of docs/configuration.md, generated from the schema (a test keeps them equal). */
export function configTable(): string {
  const rows = [...fields()].map(([path, f]) => {
    const def = f.default === undefined ? '—' : `\`${f.default}\``;
    const kind = f.kind === 'enum' ? f.values!.map((v) => `\`${v}\``).join(' \\| ') : f.kind;
    return `| \`${path}\` | \`${envName(path, f)}\` | ${def} | ${kind} | ${f.description}${f.secret ? ' (secret: redacted)' : ''} |`;
  });
  return ['| key | env var | default | type | meaning |', '|---|---|---|---|---|', ...rows].join('\n');
}
