import f16Source from '../../shaders/linear_f16.wgsl';
import f32Source from '../../shaders/linear_f32.wgsl';
import q4Source from '../../shaders/linear_q4.wgsl';
import q4MvSource from '../../shaders/linear_q4_mv.wgsl';
import q8Source from '../../shaders/linear_q8.wgsl';
import q8MvSource from '../../shaders/linear_q8_mv.wgsl';
import tiledSource from '../../shaders/linear_tiled.wgsl';
import type { Gpu } from '../gpu/context';
import { params, type Encoder } from '../gpu/encoder';
import type { GpuMatrix, WeightFormat } from '../model/types';

const SOURCES: Record<WeightFormat, string> = { f32: f32Source, f16: f16Source, q8: q8Source, q4: q4Source };

/**
 * Tests set `allowSubgroups = false` to exercise the workgroup-memory reduction on adapters with subgroups.
 * The decode matvec of q4/q8 (one token, cols % 32 == 0; shaders/linear_q*_mv.wgsl) takes `mvRows` rows per
 * workgroup and at most `mvLanes` lanes (fewer when a row has fewer 32-column groups); `mv = false` sends
 * decode through the tiled kernel instead (the benchmark's comparison).
 */
export const linearTuning = { allowSubgroups: true, mv: true, mvRows: 8, mvLanes: 64 };

const MV_SOURCES: Partial<Record<WeightFormat, string>> = { q8: q8MvSource, q4: q4MvSource };

/** Lanes per workgroup (each row tile is reduced over them), weight rows per workgroup, and columns per lane step. */
const LANES = 64;
const ROWS = 4;
const UNIT = 8;

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

/**
 * Tokens per workgroup: each weight is read once per tile of this many tokens. Decode (1 token) gets its
 * own matvec variant; any other count uses tiles of 8 (a partial tile repeats its last token, so a few
 * wasted FMAs but no extra weight traffic, and one pipeline fewer to compile per format).
 */
function tokenTile(tokens: number): number {
  return tokens <= 1 ? 1 : 8;
}

const compiled = new WeakMap<Gpu, Map<string, GPUComputePipeline>>();

function pipeline(enc: Encoder, format: WeightFormat, tt: number, aligned: boolean): GPUComputePipeline {
  const subgroups = enc.gpu.caps.subgroups && linearTuning.allowSubgroups;
  const label = `linear_${format} R${ROWS} T${tt} L${LANES}${subgroups ? ' sg' : ''}${aligned ? ' aligned' : ''}`;
  let cache = compiled.get(enc.gpu);
  if (!cache) compiled.set(enc.gpu, (cache = new Map()));
  let p = cache.get(label);
  if (!p) {
    const code = (subgroups ? 'enable subgroups;\n' : '')
      + `const R = ${ROWS}u;\nconst TT = ${tt}u;\nconst L = ${LANES}u;\n`
      + specialize(`${SOURCES[format]}\n${tiledSource}`, { SUBGROUPS: subgroups, ALIGNED: aligned });
    p = enc.gpu.pipeline(label, code);
    cache.set(label, p);
  }
  return p;
}

function mvPipeline(enc: Encoder, format: WeightFormat, rows: number, lanes: number): GPUComputePipeline {
  const subgroups = enc.gpu.caps.subgroups && linearTuning.allowSubgroups;
  const label = `linear_${format}_mv R${rows} L${lanes}${subgroups ? ' sg' : ''}`;
  let cache = compiled.get(enc.gpu);
  if (!cache) compiled.set(enc.gpu, (cache = new Map()));
  let p = cache.get(label);
  if (!p) {
    const code = (subgroups ? 'enable subgroups;\n' : '') + `const R = ${rows}u;\nconst L = ${lanes}u;\n` + specialize(MV_SOURCES[format]!, { SUBGROUPS: subgroups });
    p = enc.gpu.pipeline(label, code);
    cache.set(label, p);
  }
  return p;
}

/** Lanes of the decode matvec: one 32-column group per lane step, at most `mvLanes`, at least 32. */
function mvLanes(groups: number): number {
  let lanes = 32;
  while (lanes < linearTuning.mvLanes && lanes < groups) lanes *= 2;
  return lanes;
}

const placeholders = new WeakMap<Gpu, GPUBuffer>();

/** The buffer bound as bias when there is none (the kernel does not read it). */
function placeholder(gpu: Gpu): GPUBuffer {
  let b = placeholders.get(gpu);
  if (!b) placeholders.set(gpu, (b = gpu.buffer('linear no-bias placeholder', 16)));
  return b;
}

/**
 * y = x · Wᵀ (+ bias): x f32[tokens][w.cols], y f32[tokens][w.rows], bias f32[w.rows].
 * One dispatch per part; part p writes columns rowStart .. rowStart + rows of every token's y row.
 */
export function linear(enc: Encoder, w: GpuMatrix, x: GPUBuffer, y: GPUBuffer, tokens: number, bias: GPUBuffer | null = null): void {
  if (tokens <= 0 || w.rows === 0) return;
  if (w.cols <= 0) throw new Error(`linear ${w.label}: no columns`);
  if (tokens === 1 && linearTuning.mv && MV_SOURCES[w.format] && w.cols % 32 === 0) {
    matvec(enc, w, x, y, bias);
    return;
  }
  const tt = tokenTile(tokens);
  const aligned = w.cols % UNIT === 0;
  const pipe = pipeline(enc, w.format, tt, aligned);
  const nunits = Math.ceil(w.cols / UNIT);
  const tokenBlocks = Math.ceil(tokens / tt);
  const quant = w.format === 'q8' || w.format === 'q4';
  for (const part of w.parts) {
    if (part.rows === 0) continue;
    const rowBlocks = Math.ceil(part.rows / ROWS);
    const count = rowBlocks * tokenBlocks;
    const buffers: GPUBuffer[] = [part.data];
    if (quant) {
      if (!part.scales) throw new Error(`linear ${w.label}: ${w.format} part without scales`);
      buffers.push(part.scales);
    }
    buffers.push(x, y, bias ?? placeholder(enc.gpu));
    enc.dispatch(pipe, params(part.rows, w.cols, tokens, w.rows, part.rowStart, nunits, rowBlocks, count, bias ? 1 : 0), buffers, enc.grid(count));
  }
}

/** Decode (one token) of a q4/q8 matrix with cols % 32 == 0: shaders/linear_q*_mv.wgsl, one dispatch per part. */
function matvec(enc: Encoder, w: GpuMatrix, x: GPUBuffer, y: GPUBuffer, bias: GPUBuffer | null): void {
  const R = linearTuning.mvRows;
  const groups = w.cols / 32;
  const pipe = mvPipeline(enc, w.format, R, mvLanes(groups));
  for (const part of w.parts) {
    if (part.rows === 0) continue;
    if (!part.scales) throw new Error(`linear ${w.label}: ${w.format} part without scales`);
    const count = Math.ceil(part.rows / R);
    const p = params(part.rows, w.cols, 1, w.rows, part.rowStart, groups, count, count, bias ? 1 : 0);
    enc.dispatch(pipe, p, [part.data, part.scales, x, y, bias ?? placeholder(enc.gpu)], enc.grid(count));
  }
}
