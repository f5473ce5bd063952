/**
 * WGSL source assembly shared by the kernels (WGSL has neither includes nor a preprocessor): shared pieces
 * of shaders/ included by name (`// #include NAME.wgsl`), conditional blocks (`// #if NAME`), constants
 * prepended to a kernel's source, and uniform parameter blocks declared once for both sides (`paramLayout`).
 */
import dmsDecision from '../../shaders/dms_decision.wgsl';
import f16Round from '../../shaders/f16_round.wgsl';
import kvQuant from '../../shaders/kv_quant.wgsl';
import subgroupScatterSum from '../../shaders/subgroup_scatter_sum.wgsl';
import weightScales from '../../shaders/weight_scales.wgsl';
import workgroupSum from '../../shaders/workgroup_sum.wgsl';
import { params } from './encoder';

/** The pieces of shaders/ that kernels include, by file name. */
const PIECES: Readonly<Record<string, string>> = {
  'dms_decision.wgsl': dmsDecision, 'f16_round.wgsl': f16Round, 'kv_quant.wgsl': kvQuant, 'workgroup_sum.wgsl': workgroupSum,
  'subgroup_scatter_sum.wgsl': subgroupScatterSum, 'weight_scales.wgsl': weightScales,
};

/** Replaces each `// #include NAME.wgsl` line with that shared piece of shaders/ (before specialize: pieces may hold `// #if` blocks). */
export function include(source: string): string {
  return source.replace(/^[ \t]*\/\/[ \t]*#include[ \t]+(\S+)[ \t]*$/gm, (_, name: string) => {
    const piece = PIECES[name];
    if (piece === undefined) throw new Error(`include: no shared piece ${name} (${Object.keys(PIECES).join(', ')})`);
    return piece;
  });
}

/**
 * Keeps the lines between `// #if NAME` and `// #else` / `// #endif` when `defines[NAME]`, else the
 * lines between `// #else` and `// #endif`. Blocks nest. Directive lines themselves are dropped.
 */
export function specialize(source: string, defines: Record<string, boolean>): string {
  const out: string[] = [];
  const stack: Array<{ parent: boolean; cond: boolean; inElse: boolean }> = [];
  let active = true;
  for (const line of source.split('\n')) {
    const m = /^\s*\/\/\s*#(if|else|endif)\b\s*(\w*)/.exec(line);
    if (!m) {
      if (active) out.push(line);
      continue;
    }
    if (m[1] === 'if') {
      if (!(m[2] in defines)) throw new Error(`specialize: #if ${m[2]} has no value`);
      stack.push({ parent: active, cond: defines[m[2]], inElse: false });
      active = active && defines[m[2]];
    } else {
      const top = stack[stack.length - 1];
      if (!top) throw new Error(`specialize: #${m[1]} without #if`);
      if (m[1] === 'else') {
        if (top.inElse) throw new Error('specialize: two #else');
        top.inElse = true;
        active = top.parent && !top.cond;
      } else {
        stack.pop();
        active = top.parent;
      }
    }
  }
  if (stack.length) throw new Error('specialize: unterminated #if');
  return out.join('\n');
}

/** `const NAME = <value>u;` lines for unsigned integer constants, prepended to a kernel's source. */
export function u32Constants(values: Record<string, number>): string {
  return Object.entries(values).map(([k, v]) => `const ${k} = ${v >>> 0}u;\n`).join('');
}

/**
 * SN and SR of subgroup_scatter_sum.wgsl for summing `values` values per lane over spans of at least `minSpan`
 * lanes (0 when unknown: no scatter rounds, a butterfly per value): SN the next power of two, SR the rounds.
 */
export function scatterConstants(values: number, minSpan: number): { SN: number; SR: number } {
  let sn = 1;
  while (sn < values) sn *= 2;
  let sr = 0;
  while (2 ** (sr + 1) <= Math.min(sn, minSpan)) sr++;
  return { SN: sn, SR: sr };
}

/** Scalar types of a uniform parameter block's fields. */
export type ParamType = 'u32' | 'i32' | 'f32';

/**
 * A kernel's uniform parameter block (binding 0), declared once as a field list in its dispatcher: `struct`
 * is the WGSL `struct Params` the dispatcher puts before the kernel's source, and `pack` writes a block of
 * values in the same order, so the two sides cannot drift apart. Fields are 4 bytes each; unused u32 fields
 * pad the block to whole 16-byte rows.
 */
export interface ParamLayout<K extends string> {
  readonly fields: readonly K[];
  readonly struct: string;
  pack(values: Readonly<Record<K, number>>): Uint32Array;
}

export function paramLayout<const F extends Readonly<Record<string, ParamType>>>(fields: F): ParamLayout<keyof F & string> {
  type K = keyof F & string;
  const names = Object.keys(fields) as K[];
  const decls = names.map((n) => `${n}: ${fields[n]}`);
  for (let k = 0; decls.length % 4; k++) decls.push(`_pad${k}: u32`);
  const rows = Array.from({ length: decls.length / 4 }, (_, r) => `  ${decls.slice(4 * r, 4 * r + 4).join(', ')},`);
  return {
    fields: names,
    struct: `struct Params {\n${rows.join('\n')}\n}\n`,
    pack: (values) => params(...names.map((n) => {
      const v = values[n];
      return fields[n] === 'f32' ? { f32: v } : fields[n] === 'i32' ? { i32: v } : v;
    })),
  };
}
