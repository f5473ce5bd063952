import f16Source from '../../shaders/linear_f16.wgsl';
import f32Source from '../../shaders/linear_f32.wgsl';
import q4Source from '../../shaders/linear_q4.wgsl';
import mvSource from '../../shaders/linear_mv.wgsl';
import mvF16Source from '../../shaders/linear_mv_f16.wgsl';
import mvF32Source from '../../shaders/linear_mv_f32.wgsl';
import mvQ4Source from '../../shaders/linear_mv_q4.wgsl';
import mvQ8Source from '../../shaders/linear_mv_q8.wgsl';
import q8Source from '../../shaders/linear_q8.wgsl';
import gemmSource from '../../shaders/linear_gemm.wgsl';
import tiledSource from '../../shaders/linear_tiled.wgsl';
import type { Gpu } from '../gpu/context';
import { params, type Encoder } from '../gpu/encoder';
import { include, specialize, u32Constants } from '../gpu/wgsl';
import type { GpuMatrix, WeightFormat } from '../model/types';
import { add } from './add';
import { rmsNorm } from './rmsnorm';
import { siluMul } from './silu-mul';

const SOURCES: Record<WeightFormat, string> = { f32: f32Source, f16: f16Source, q8: q8Source, q4: q4Source };

/**
 * Tests set `allowSubgroups = false` to exercise the workgroup-memory reduction on adapters with subgroups.
 * The decode matvec (one token, cols % 32 == 0; shaders/linear_mv.wgsl) takes `mvRows` rows per workgroup
 * for q4/q8 (f16: half, f32: a quarter, at least 2) and at most `mvLanes` lanes (fewer when a row has
 * fewer 32-column groups), `mvUnroll` groups per lane step; `mv = false` sends decode through the tiled kernel and separate norm, add and
 * activation dispatches instead (the benchmark's comparison). From `gemm.minTokens` tokens on (prefill),
 * matrices with cols % 32 == 0 go through the register-blocked GEMM (shaders/linear_gemm.wgsl: tiles of
 * `tm` tokens x `tn` rows, `mt` tokens x `nt` rows per thread); `minTokens: 0` keeps the lane-split kernel.
 */
export const linearTuning = { allowSubgroups: true, mv: true, mvRows: 8, mvLanes: 128, mvUnroll: 1, gemm: { minTokens: 16, tm: 64, tn: 128, mt: 8, nt: 4 } };

const MV_FORMATS: Record<WeightFormat, string> = { f32: mvF32Source, f16: mvF16Source, q8: mvQ8Source, q4: mvQ4Source };

/** Lanes per workgroup (each row tile is reduced over them), weight rows per workgroup, and columns per lane step. */
const LANES = 64;
const ROWS = 4;
const UNIT = 8;

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
      + specialize(include(`${SOURCES[format]}\n${tiledSource}`), { SUBGROUPS: subgroups, ALIGNED: aligned });
    p = enc.gpu.pipeline(label, code);
    cache.set(label, p);
  }
  return p;
}

/** What linear_mv.wgsl fuses around the product (see there). */
interface MvMode {
  norm: boolean;
  silu: boolean;
  add: boolean;
}

function mvRows(format: WeightFormat): number {
  const r = linearTuning.mvRows;
  return format === 'f32' ? Math.max(2, r >> 2) : format === 'f16' ? Math.max(2, r >> 1) : r;
}

function mvPipeline(enc: Encoder, format: WeightFormat, rows: number, lanes: number, m: MvMode): GPUComputePipeline {
  const subgroups = enc.gpu.caps.subgroups && linearTuning.allowSubgroups;
  const ku = linearTuning.mvUnroll;
  const label = `linear_mv_${format} R${rows} L${lanes}${ku > 1 ? ` U${ku}` : ''}${m.norm ? ' norm' : ''}${m.silu ? ' silu' : ''}${m.add ? ' add' : ''}${subgroups ? ' sg' : ''}`;
  let cache = compiled.get(enc.gpu);
  if (!cache) compiled.set(enc.gpu, (cache = new Map()));
  let p = cache.get(label);
  if (!p) {
    const quant = format === 'q4' || format === 'q8';
    const code = (subgroups ? 'enable subgroups;\n' : '') + u32Constants({ R: rows, L: lanes, KU: ku }) + MV_FORMATS[format] + '\n'
      + specialize(include(mvSource), { SUBGROUPS: subgroups, QUANT: quant, NORM: m.norm, SILU: m.silu, ADD: m.add });
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

/** The GEMM tile in use: the tuned one, or 64 x 64 where the device has less workgroup memory than it needs. */
function gemmTile(gpu: Gpu): { tm: number; tn: number; mt: number; nt: number } {
  const t = linearTuning.gemm;
  return 4 * 32 * (t.tm + t.tn) <= gpu.caps.maxComputeWorkgroupStorageSize ? t : { tm: 64, tn: 64, mt: 4, nt: 4 };
}

function gemmPipeline(enc: Encoder, format: WeightFormat): GPUComputePipeline {
  const { tm, tn, mt, nt } = gemmTile(enc.gpu);
  const label = `linear_gemm_${format} TM${tm} TN${tn} MT${mt} NT${nt}`;
  let cache = compiled.get(enc.gpu);
  if (!cache) compiled.set(enc.gpu, (cache = new Map()));
  let p = cache.get(label);
  if (!p) {
    const code = u32Constants({ TM: tm, TN: tn, MT: mt, NT: nt }) + specialize(include(`${SOURCES[format]}\n${gemmSource}`), { SUBGROUPS: false, ALIGNED: true });
    p = enc.gpu.pipeline(label, code);
    cache.set(label, p);
  }
  return p;
}

/**
 * y = x · Wᵀ (+ bias): x f32[tokens][w.cols], y f32[tokens][w.rows], bias f32[w.rows].
 * One dispatch per part; part p writes columns rowStart .. rowStart + rows of every token's y row.
 */
export function linear(enc: Encoder, w: GpuMatrix, x: GPUBuffer, y: GPUBuffer, tokens: number, bias: GPUBuffer | null = null): void {
  if (tokens <= 0 || w.rows === 0) return;
  if (w.cols <= 0) throw new Error(`linear ${w.label}: no columns`);
  if (tokens === 1 && mvFits(w, false)) {
    matvec(enc, w, x, y, { norm: null, bias, silu: false, add: false });
    return;
  }
  const gemm = linearTuning.gemm.minTokens > 0 && tokens >= linearTuning.gemm.minTokens && w.cols % 32 === 0;
  const tile = gemmTile(enc.gpu);
  const tt = gemm ? tile.tm : tokenTile(tokens);
  const rowTile = gemm ? tile.tn : ROWS;
  const aligned = w.cols % UNIT === 0;
  const pipe = gemm ? gemmPipeline(enc, w.format) : pipeline(enc, w.format, tt, aligned);
  const nunits = Math.ceil(w.cols / UNIT);
  const tokenBlocks = Math.ceil(tokens / tt);
  const quant = w.format === 'q8' || w.format === 'q4';
  for (const part of w.parts) {
    if (part.rows === 0) continue;
    const rowBlocks = Math.ceil(part.rows / rowTile);
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

/** The decode matvec applies: cols in whole groups of 32, and for SILU gate and up rows in one part. */
function mvFits(w: GpuMatrix, silu: boolean): boolean {
  return linearTuning.mv && w.cols % 32 === 0 && (!silu || (w.parts.length === 1 && w.rows % 2 === 0));
}

export interface ProjectOptions {
  /** RMS-normalise x first: x * inverseSqrt(mean(x^2) + eps) * weight (weight f32[w.cols]). */
  norm?: { weight: GPUBuffer; eps: number } | null;
  bias?: GPUBuffer | null;
  /**
   * 'store': y = the product (+ bias). 'add': y += the product (the residual stream). 'silu': w is
   * [gate; up] stacked (w.rows = 2F) and y f32[tokens][F] = silu(gate) * up.
   */
  epilogue?: 'store' | 'add' | 'silu';
}

/**
 * A layer's projection with what surrounds it: y (=, +=) epilogue(norm(x) · Wᵀ (+ bias)). One token runs
 * it as one fused dispatch per part (shaders/linear_mv.wgsl); several tokens (prefill) as the separate
 * dispatches it stands for (rmsnorm into `scratch.normed`, the tiled product into `scratch.product`, then
 * add or silu_mul), which need those buffers (tokens x w.cols and tokens x w.rows floats).
 */
export function project(
  enc: Encoder,
  w: GpuMatrix,
  x: GPUBuffer,
  y: GPUBuffer,
  tokens: number,
  o: ProjectOptions,
  scratch: { normed?: GPUBuffer; product?: GPUBuffer },
): void {
  const epilogue = o.epilogue ?? 'store';
  const silu = epilogue === 'silu';
  if (silu && o.bias) throw new Error(`project ${w.label}: no bias with the silu epilogue`);
  if (tokens === 1 && mvFits(w, silu)) {
    matvec(enc, w, x, y, { norm: o.norm ?? null, bias: o.bias ?? null, silu, add: epilogue === 'add' });
    return;
  }
  let input = x;
  if (o.norm) {
    if (!scratch.normed) throw new Error(`project ${w.label}: the norm needs a scratch buffer`);
    rmsNorm(enc, x, o.norm.weight, scratch.normed, tokens, w.cols, o.norm.eps);
    input = scratch.normed;
  }
  if (epilogue === 'store') {
    linear(enc, w, input, y, tokens, o.bias ?? null);
    return;
  }
  if (!scratch.product) throw new Error(`project ${w.label}: the ${epilogue} epilogue needs a scratch buffer`);
  linear(enc, w, input, scratch.product, tokens, o.bias ?? null);
  if (silu) siluMul(enc, scratch.product, y, tokens, w.rows / 2);
  else add(enc, y, scratch.product, tokens * w.rows);
}

/** One token through shaders/linear_mv.wgsl, one dispatch per part. */
function matvec(enc: Encoder, w: GpuMatrix, x: GPUBuffer, y: GPUBuffer, o: { norm: { weight: GPUBuffer; eps: number } | null; bias: GPUBuffer | null; silu: boolean; add: boolean }): void {
  const R = mvRows(w.format);
  const outPerGroup = o.silu ? R / 2 : R;
  const pipe = mvPipeline(enc, w.format, R, mvLanes(w.cols / 32), { norm: !!o.norm, silu: o.silu, add: o.add });
  const quant = w.format === 'q4' || w.format === 'q8';
  for (const part of w.parts) {
    if (part.rows === 0) continue;
    if (quant && !part.scales) throw new Error(`linear ${w.label}: ${w.format} part without scales`);
    const outRows = o.silu ? part.rows / 2 : part.rows;
    const count = Math.ceil(outRows / outPerGroup);
    const buffers: GPUBuffer[] = [part.data];
    if (quant) buffers.push(part.scales!);
    buffers.push(x, y, o.bias ?? placeholder(enc.gpu));
    if (o.norm) buffers.push(o.norm.weight);
    const p = params(outRows, w.cols, part.rowStart, count, o.bias ? 1 : 0, { f32: o.norm?.eps ?? 0 });
    enc.dispatch(pipe, p, buffers, enc.grid(count));
  }
}
