/** A small, strict parser for `--flag value` and `--switch` arguments. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface ArgSpec {
  /** Flags that take a value. */
  values: string[];
  /** Flags without a value. */
  switches: string[];
}

export function parseArgs(argv: string[], spec: ArgSpec): { values: Map<string, string>; switches: Set<string> } {
  const values = new Map<string, string>();
  const switches = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new UsageError(`unexpected argument "${a}"`);
    const [name, inline] = a.slice(2).split(/=(.*)/s, 2);
    if (spec.switches.includes(name)) {
      if (inline !== undefined) throw new UsageError(`--${name} takes no value`);
      switches.add(name);
    } else if (spec.values.includes(name)) {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new UsageError(`--${name} needs a value`);
      values.set(name, v);
    } else {
      throw new UsageError(`unknown option --${name}`);
    }
  }
  return { values, switches };
}

export function intArg(values: Map<string, string>, name: string, min: number, fallback?: number): number | undefined {
  const v = values.get(name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer >= ${min}, got "${v}"`);
  return n;
}

export function numArg(values: Map<string, string>, name: string, min: number, max: number): number | undefined {
  const v = values.get(name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max) throw new UsageError(`--${name} must be a number in [${min}, ${max}], got "${v}"`);
  return n;
}

export function choiceArg<T extends string>(values: Map<string, string>, name: string, choices: readonly T[]): T | undefined {
  const v = values.get(name);
  if (v === undefined) return undefined;
  if (!(choices as readonly string[]).includes(v)) throw new UsageError(`--${name} must be one of ${choices.join(', ')}, got "${v}"`);
  return v as T;
}

/** A comma list of choices (`--kv-dtype f16,q8`), each checked; `fallback` when the option is absent. */
export function choiceListArg<T extends string>(values: Map<string, string>, name: string, choices: readonly T[], fallback: string): T[] {
  return (values.get(name) ?? fallback).split(',').map((v) => {
    if (!(choices as readonly string[]).includes(v)) throw new UsageError(`--${name}: one or more of ${choices.join(', ')}, not "${v}"`);
    return v as T;
  });
}
