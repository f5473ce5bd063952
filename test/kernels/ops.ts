/**
 * The op table's machinery (test/kernels/ops.test.ts, as ggml's test-backend-ops): buffers with sentinel
 * tails, and one runner per kernel that uploads a case, records the kernel, reads back what it wrote and
 * computes the CPU reference (worker/reference/<name>.ts). The kernels' own test files use the same
 * runners for their particular checks.
 */
import { expect } from 'vitest';
import type { Gpu } from '../../worker/gpu/context';
import { Encoder } from '../../worker/gpu/encoder';
import { ropeInvFreq } from '../../worker/engine/rope';
import { add } from '../../worker/kernels/add';
import { embed } from '../../worker/kernels/embed';
import { linear } from '../../worker/kernels/linear';
import { qkNormRope } from '../../worker/kernels/qk-norm-rope';
import { rmsNorm } from '../../worker/kernels/rmsnorm';
import { siluMul } from '../../worker/kernels/silu-mul';
import { packRows, uploadMatrix } from '../../worker/load/pack';
import type { GpuMatrix, WeightFormat } from '../../worker/model/types';
import { addRef } from '../../worker/reference/add';
import { embedRef } from '../../worker/reference/embed';
import { qkNormRopeRef, type QkNormRopeRefArgs } from '../../worker/reference/qk-norm-rope';
import { dequantizeRows } from '../../worker/reference/quant';
import { rmsNormRef } from '../../worker/reference/rmsnorm';
import { siluMulRef } from '../../worker/reference/silu-mul';
import { randn } from '../gpu';

/** Words after every buffer a kernel reads or writes. */
const TAIL = 64;
/** The sentinel past a written buffer's end (finite, distinct values: any write shows). */
const SENTINEL = new Uint32Array(randn(TAIL, 0x5e11, 1e3).buffer);
/** What follows an input's end: values a kernel reading past its input would pick up. */
const JUNK = randn(TAIL, 0x1a2b, 1e3);

/** The buffers of one case: inputs, outputs with sentinel tails, weight matrices; destroy() frees them all. */
export class OpBuffers {
  private readonly owned: GPUBuffer[] = [];
  private readonly outputs = new Map<GPUBuffer, number>();

  constructor(readonly gpu: Gpu) {}

  /** A buffer the kernel only reads: `data`, then junk. */
  input(data: Float32Array | Uint32Array): GPUBuffer {
    const words = new Uint32Array(data.length + TAIL);
    words.set(new Uint32Array(data.buffer, data.byteOffset, data.length));
    words.set(new Uint32Array(JUNK.buffer), data.length);
    return this.own(this.gpu.upload('op input', words));
  }

  /** A buffer of n words the kernel writes (in place when `init` is given, else NaNs), then the sentinel tail that read() checks. */
  output(n: number, init?: Float32Array | Uint32Array): GPUBuffer {
    const words = new Uint32Array(new Float32Array(n + TAIL).fill(NaN).buffer);
    if (init) words.set(new Uint32Array(init.buffer, init.byteOffset, init.length));
    words.set(SENTINEL, n);
    const buf = this.own(this.gpu.upload('op output', words));
    this.outputs.set(buf, n);
    return buf;
  }

  /** A weight matrix uploaded as the engine does (row-split into parts of at most maxPartBytes). */
  matrix(w: Float32Array, rows: number, cols: number, format: WeightFormat, maxPartBytes?: number): GpuMatrix {
    const m = uploadMatrix(this.gpu, 'op matrix', w, rows, cols, format, maxPartBytes);
    for (const p of m.parts) {
      this.own(p.data);
      if (p.scales) this.own(p.scales);
    }
    return m;
  }

  /** Records with `record` and submits. */
  run(record: (enc: Encoder) => void): void {
    const enc = new Encoder(this.gpu);
    record(enc);
    enc.submit();
  }

  /** What the kernel wrote into an output, as f32, after checking that its sentinel tail came back bit for bit. */
  async read(buf: GPUBuffer, what = 'output'): Promise<Float32Array> {
    return new Float32Array((await this.words(buf, what)).buffer);
  }

  /** The same as u32 words. */
  async words(buf: GPUBuffer, what = 'output'): Promise<Uint32Array> {
    const n = this.outputs.get(buf);
    if (n === undefined) throw new Error('OpBuffers.read: not an output');
    const all = await this.gpu.readU32(buf, n + TAIL);
    expect(Array.from(all.subarray(n)), `${what}: nothing written past its end`).toEqual(Array.from(SENTINEL));
    return all.slice(0, n);
  }

  destroy(): void {
    for (const b of this.owned) this.gpu.destroy(b);
    this.owned.length = 0;
  }

  private own(b: GPUBuffer): GPUBuffer {
    this.owned.push(b);
    return b;
  }
}

/** Runs `body` with fresh buffers on `gpu` and frees them after. */
export async function withBuffers<T>(gpu: Gpu, body: (t: OpBuffers) => Promise<T>): Promise<T> {
  const t = new OpBuffers(gpu);
  try {
    return await body(t);
  } finally {
    t.destroy();
  }
}

/** x += y over n floats. */
export async function runAdd(t: OpBuffers, n: number) {
  const x = randn(n, 1), y = randn(n, 2);
  const bx = t.output(n, x), by = t.input(y);
  t.run((enc) => add(enc, bx, by, n));
  return { got: await t.read(bx), want: addRef(x, y) };
}

/** RMSNorm of `rows` rows at very different scales (so the normalisation itself is checked, not only the weights). */
export async function runRmsNorm(t: OpBuffers, rows: number, cols: number, eps: number) {
  const x = randn(rows * cols, 11 + cols, 1);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) x[r * cols + c] *= 10 ** ((r % 5) - 2);
  const w = randn(cols, 3 + rows, 2);
  const by = t.output(rows * cols);
  t.run((enc) => rmsNorm(enc, t.input(x), t.input(w), by, rows, cols, eps));
  return { x, got: await t.read(by), want: rmsNormRef(x, w, rows, cols, eps) };
}

/** silu(gate) * up of rows [gate | up] of 2F floats. */
export async function runSiluMul(t: OpBuffers, rows: number, F: number, gateUp = randn(rows * 2 * F, rows * 7 + F, 8)) {
  const bo = t.output(rows * F);
  t.run((enc) => siluMul(enc, t.input(gateUp), bo, rows, F));
  return { got: await t.read(bo), want: siluMulRef(gateUp, rows, F) };
}

/** Gathers `ids` from a random table of `rows` x `cols` in `format` (values of randn(seed, scale)), split into parts of at most maxPartBytes. */
export async function runEmbed(t: OpBuffers, format: WeightFormat, rows: number, cols: number, maxPartBytes: number, ids: (m: GpuMatrix) => number[], table = { seed: cols, scale: 2 }) {
  const values = randn(rows * cols, table.seed, table.scale);
  const m = t.matrix(values, rows, cols, format, maxPartBytes);
  const tokenIds = new Uint32Array(ids(m));
  const out = t.output(tokenIds.length * cols);
  t.run((enc) => embed(enc, m, t.input(tokenIds), out, tokenIds.length));
  const want = embedRef(dequantizeRows(packRows(values, rows, cols, format), rows, cols, format), cols, tokenIds);
  return { got: await t.read(out), want, parts: m.parts.length };
}

export interface QkCase {
  rows: number; numHeads: number; numKvHeads: number; headDim: number; norm: boolean; dms: boolean; positions?: Uint32Array;
  /** The DMS variant (borrowed channel, zeroing after RoPE); default d-1 and true. */
  dmsChannel?: number; dmsZeroAfter?: boolean;
}

/** Non-contiguous positions, some large. */
export function positionsFor(rows: number, seed: number): Uint32Array {
  const pos = new Uint32Array(rows);
  for (let r = 0; r < rows; r++) pos[r] = ((r * 7919 + seed * 104729) % 50_000) + (r % 3 === 0 ? 0 : 3 * r);
  return pos;
}

/** q/k RMSNorm (optional), the DMS decision (optional) and RoPE, in place on a random qkv; alpha starts as NaNs. */
export async function runQkNormRope(t: OpBuffers, c: QkCase, seed: number) {
  const { rows, numHeads, numKvHeads, headDim: d } = c;
  const n = rows * (numHeads + 2 * numKvHeads) * d;
  const qkv = randn(n, seed, 3);
  const positions = c.positions ?? positionsFor(rows, seed);
  const invFreq = ropeInvFreq(d, 1_000_000, null);
  const qNorm = c.norm ? randn(d, seed + 1, 2) : null;
  const kNorm = c.norm ? randn(d, seed + 2, 2) : null;
  const args: QkNormRopeRefArgs = { rows, numHeads, numKvHeads, headDim: d, eps: 1e-6, qNorm, kNorm, dms: c.dms ? { scale: 100, offset: 5, channel: c.dmsChannel, zeroAfter: c.dmsZeroAfter } : null };
  const bq = t.output(n, qkv), ba = t.output(rows * numKvHeads);
  const bqn = qNorm && t.input(qNorm), bkn = kNorm && t.input(kNorm);
  t.run((enc) => qkNormRope(enc, bq, t.input(positions), t.input(invFreq), ba, { ...args, qNorm: bqn, kNorm: bkn }));
  const got = await t.read(bq, 'qkv'), alpha = await t.read(ba, 'alpha');
  return { qkv, got, alpha, ref: qkNormRopeRef(qkv, positions, invFreq, args), args };
}

/** y = x·Wᵀ (+ bias) for `tokens` random rows; also the dequantized weights the GPU saw. */
export async function runLinear(t: OpBuffers, format: WeightFormat, rows: number, cols: number, tokens: number, opts: { bias?: boolean; maxPartBytes?: number; seed?: number } = {}) {
  const seed = opts.seed ?? rows * 131 + cols * 7 + tokens;
  const w = randn(rows * cols, seed, 0.5);
  const x = randn(tokens * cols, seed + 1);
  const bias = opts.bias ? randn(rows, seed + 2) : null;
  const m = t.matrix(w, rows, cols, format, opts.maxPartBytes);
  const by = t.output(tokens * rows);
  t.run((enc) => linear(enc, m, t.input(x), by, tokens, bias ? t.input(bias) : null));
  const y = await t.read(by);
  const wq = dequantizeRows(packRows(w, rows, cols, format), rows, cols, format);
  return { y, w, wq, x, bias, parts: m.parts.length };
}
