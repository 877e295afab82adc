import { IngestError } from '../errors.js';

export type OptionKind = 'string' | 'int' | 'number' | 'flag';

export interface OptionSpec {
  readonly kind: OptionKind;
  readonly min?: number;
  readonly max?: number;
  readonly values?: readonly string[];
}

export type ParsedArgs = { positional: string[]; options: Record<string, string | number | boolean> };

/** Strict --name value / --name=value parsing: any unknown option or bad value is a usage error naming it. */
export function parseArgs(argv: readonly string[], specs: Readonly<Record<string, OptionSpec>>): ParsedArgs {
  const out: ParsedArgs = { positional: [], options: {} };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--') || arg === '--') {
      if (arg !== '--') out.positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq === -1 ? undefined : eq);
    const spec = specs[name];
    if (!spec) throw new IngestError('EI_CLI_USAGE', `unknown option --${name}`);
    if (spec.kind === 'flag') {
      if (eq !== -1) throw new IngestError('EI_CLI_USAGE', `option --${name} takes no value`);
      out.options[name] = true;
      continue;
    }
    const raw = eq === -1 ? argv[++i] : arg.slice(eq + 1);
    if (raw === undefined) throw new IngestError('EI_CLI_USAGE', `option --${name} needs a value`);
    if (spec.kind === 'string') {
      if (spec.values && !spec.values.includes(raw)) {
        throw new IngestError(
          'EI_CLI_USAGE',
          `option --${name} must be one of ${spec.values.join(', ')} (got "${raw}")`,
        );
      }
      out.options[name] = raw;
      continue;
    }
    const n = Number(raw);
    const ok = raw.trim() !== '' && Number.isFinite(n) && (spec.kind === 'number' || Number.isInteger(n));
    if (!ok)
      throw new IngestError(
        'EI_CLI_USAGE',
        `option --${name} must be ${spec.kind === 'int' ? 'an integer' : 'a number'} (got "${raw}")`,
      );
    if (spec.min !== undefined && n < spec.min)
      throw new IngestError('EI_CLI_USAGE', `option --${name} must be at least ${spec.min} (got ${n})`);
    if (spec.max !== undefined && n > spec.max)
      throw new IngestError('EI_CLI_USAGE', `option --${name} must be at most ${spec.max} (got ${n})`);
    out.options[name] = n;
  }
  return out;
}
