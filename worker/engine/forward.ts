/**
 * The transformer forward pass for Qwen3 / Qwen2 / Llama, recorded into one Encoder per step.
 * Activation buffers are sized for `maxStepTokens` rows (the prefill chunk) and reused every step.
 *
 * A decode layer is seven dispatches: qkv (input norm fused in), q/k norm + RoPE (+ the DMS decision),
 * attention, merge + KV commit, o (+ residual), gate/up (post-attention norm and SwiGLU fused in), down
 * (+ residual). Prefill runs the same projections unfused (kernels/linear.ts, `project`).
 * Decode steps (one row per sequence) are recorded once per shape and replayed (StepPlan): nothing in
 * them depends on the position, which the KV cache keeps on the GPU.
 *
 * DMS decisions: the KV cache applies the decision of row t to the token before it (NVIDIA's shift by
 * one). A FastDMS checkpoint (dms_metadata.json) decides each token's fate by its own query instead, so
 * q/k norm + RoPE writes those into `alphaOwn`, and per layer and segment three copies shift them by one
 * row into `alpha`: the segment's first row gets the sequence's last decision of the previous step (kept
 * per (sequence, layer) in `alphaCarry`), row r gets row r-1's, and the last row's is kept for the next step.
 */
import type { Gpu } from '../gpu/context';
import { Encoder, type StepPlan } from '../gpu/encoder';
import { embed } from '../kernels/embed';
import { project } from '../kernels/linear';
import { qkNormRope } from '../kernels/qk-norm-rope';
import type { KvCache, Segment } from '../kv/cache';
import type { ModelConfig } from '../model/types';
import { ropeInvFreq } from './rope';
import type { ModelWeights } from '../load/weights';

/** Recorded decode step shapes kept per Forward (a chat needs one or two; chains one per width). */
const MAX_PLANS = 16;

/** `plans: false` records every step (the comparison of `dms check` and the tests). */
export const forwardTuning = { plans: true };

export class Forward {
  readonly ids: GPUBuffer;
  readonly positions: GPUBuffer;
  /** f32 [maxLogitRows][vocab] */
  readonly logits: GPUBuffer;
  private readonly x: GPUBuffer;
  private readonly h: GPUBuffer;
  private readonly qkv: GPUBuffer;
  private readonly attn: GPUBuffer;
  private readonly tmp: GPUBuffer;
  private readonly gateUp: GPUBuffer;
  private readonly act: GPUBuffer;
  private readonly alpha: GPUBuffer | null;
  private readonly alphaNorm: GPUBuffer | null;
  /** FastDMS convention: each row's own decision f32 [T][Hkv], and the carry f32 [sequences][layers][Hkv]. */
  private readonly alphaOwn: GPUBuffer | null;
  private readonly alphaCarry: GPUBuffer | null;
  /** One sequence's carry, staged for a fork (a copy cannot have the same buffer as source and destination). */
  private readonly alphaFork: GPUBuffer | null;
  private readonly invFreq: GPUBuffer;
  private readonly last: GPUBuffer;
  /** Recorded decode steps by plan key (see encode), oldest first. */
  private readonly plans = new Map<string, StepPlan>();

  constructor(
    private readonly gpu: Gpu,
    private readonly c: ModelConfig,
    private readonly w: ModelWeights,
    readonly maxStepTokens: number,
    readonly maxLogitRows: number,
    /** Sequences the KV cache holds (the FastDMS decision carry keeps one row per sequence and layer). */
    private readonly sequences = 1,
  ) {
    const T = maxStepTokens, H = c.hiddenSize, d = c.headDim;
    const f32 = (label: string, n: number) => gpu.buffer(`act:${label}`, 4 * n);
    this.ids = f32('ids', T);
    this.positions = f32('positions', T);
    this.x = f32('x', T * H);
    this.h = f32('h', T * H);
    this.qkv = f32('qkv', T * (c.numHeads + 2 * c.numKvHeads) * d);
    this.attn = f32('attn', T * c.numHeads * d);
    this.tmp = f32('tmp', T * H);
    this.gateUp = f32('gate_up', T * 2 * c.intermediateSize);
    this.act = f32('act', T * c.intermediateSize);
    this.alpha = c.dms ? f32('alpha', T * c.numKvHeads) : null;
    this.alphaNorm = c.dms?.separateAlpha ? f32('alpha_norm', T * H) : null;
    const own = c.dms?.convention === 'fastdms' && !c.dms.separateAlpha;
    this.alphaOwn = own ? f32('alpha_own', T * c.numKvHeads) : null;
    this.alphaCarry = own ? f32('alpha_carry', sequences * c.numLayers * c.numKvHeads) : null;
    this.alphaFork = own && sequences > 1 ? f32('alpha_fork', c.numLayers * c.numKvHeads) : null;
    this.last = f32('last', maxLogitRows * H);
    this.logits = f32('logits', maxLogitRows * c.vocabSize);
    this.invFreq = gpu.upload('act:inv_freq', ropeInvFreq(d, c.ropeTheta, c.ropeScaling));
  }

  /**
   * Records one step: `ids`/`positions` must already hold the rows (see setRows). Leaves logits for
   * the last `logitRows` rows (in row order) in `this.logits`. A step of one row per sequence (decode,
   * parallel chains) replays the plan recorded for the same shape, recording it the first time.
   */
  encode(enc: Encoder, kv: KvCache, segments: Segment[], rows: number, logitRows: number): void {
    if (rows > this.maxStepTokens) throw new Error(`step of ${rows} rows exceeds maxStepTokens ${this.maxStepTokens}`);
    if (logitRows > Math.min(rows, this.maxLogitRows)) throw new Error(`cannot produce ${logitRows} logit rows`);
    if (rows !== segments.length || !forwardTuning.plans) {
      this.record(enc, kv, segments, rows, logitRows);
      return;
    }
    const key = `${logitRows}|${kv.planKey(segments)}`;
    let plan = this.plans.get(key);
    if (plan) {
      // Keep the plan as the newest; the cache's bookkeeping of the step, without recording.
      this.plans.delete(key);
      kv.begin(enc, segments);
      kv.end(enc);
    } else {
      const capture = new Encoder(this.gpu, 'decode', { capture: true });
      this.record(capture, kv, segments, rows, logitRows);
      plan = capture.plan();
      if (this.plans.size >= MAX_PLANS) {
        const [oldest, p] = this.plans.entries().next().value!;
        this.plans.delete(oldest);
        p.destroy();
      }
    }
    this.plans.set(key, plan);
    enc.replay(plan);
  }

  /** The plan a decode step of these segments replays (recorded by encode), or undefined. */
  plan(kv: KvCache, segments: Segment[], logitRows: number): StepPlan | undefined {
    return this.plans.get(`${logitRows}|${kv.planKey(segments)}`);
  }

  private record(enc: Encoder, kv: KvCache, segments: Segment[], rows: number, logitRows: number): void {
    const c = this.c, H = c.hiddenSize, d = c.headDim;
    const eps = c.rmsNormEps;
    embed(enc, this.w.embed, this.ids, this.x, rows);
    kv.begin(enc, segments);
    for (let l = 0; l < c.numLayers; l++) {
      const L = this.w.layers[l];
      project(enc, L.qkv, this.x, this.qkv, rows, { norm: { weight: L.inputNorm, eps }, bias: L.qkvBias }, { normed: this.h });
      if (L.dmsAlpha && this.alpha && this.alphaNorm) {
        project(enc, L.dmsAlpha.proj, this.x, this.alpha, rows, { norm: { weight: L.dmsAlpha.norm, eps } }, { normed: this.alphaNorm });
      }
      qkNormRope(enc, this.qkv, this.positions, this.invFreq, this.alphaOwn ?? this.alpha, {
        rows,
        numHeads: c.numHeads,
        numKvHeads: c.numKvHeads,
        headDim: d,
        eps,
        qNorm: L.qNorm,
        kNorm: L.kNorm,
        dms: c.dms && !c.dms.separateAlpha
          ? { scale: c.dms.alphaScale, offset: c.dms.alphaOffset, channel: c.dms.channel, zeroAfter: c.dms.convention !== 'fastdms' }
          : null,
      });
      if (this.alphaOwn) this.shiftOwnDecisions(enc, l, segments);
      kv.write(enc, l, this.qkv, this.alpha);
      kv.attend(enc, l, this.qkv, this.attn);
      project(enc, L.o, this.attn, this.x, rows, { epilogue: 'add' }, { product: this.tmp });
      project(enc, L.gateUp, this.x, this.act, rows, { norm: { weight: L.postNorm, eps }, epilogue: 'silu' }, { normed: this.h, product: this.gateUp });
      project(enc, L.down, this.act, this.x, rows, { epilogue: 'add' }, { product: this.tmp });
    }
    kv.end(enc);
    if (logitRows > 0) {
      // The last rows' hidden states, moved to the front when they are not all of them.
      const first = rows - logitRows;
      let last = this.x;
      if (first > 0) {
        enc.copy(this.x, first * H * 4, this.h, 0, logitRows * H * 4);
        last = this.h;
      }
      project(enc, this.w.lmHead, last, this.logits, logitRows, { norm: { weight: this.w.finalNorm, eps } }, { normed: this.last });
    }
  }

  /** FastDMS: alpha[row] = the decision of the token before it in its sequence (see the file comment). */
  private shiftOwnDecisions(enc: Encoder, layer: number, segments: Segment[]): void {
    const own = this.alphaOwn!, carry = this.alphaCarry!, alpha = this.alpha!;
    const row = 4 * this.c.numKvHeads;
    for (const s of segments) {
      if (s.tokens <= 0) continue;
      if (s.seq < 0 || s.seq >= this.sequences) throw new Error(`DMS decisions: sequence ${s.seq} is outside the ${this.sequences} this forward pass keeps`);
      const slot = (s.seq * this.c.numLayers + layer) * row;
      enc.copy(carry, slot, alpha, s.row * row, row);
      if (s.tokens > 1) enc.copy(own, s.row * row, alpha, (s.row + 1) * row, (s.tokens - 1) * row);
      enc.copy(own, (s.row + s.tokens - 1) * row, carry, slot, row);
    }
  }

  /** Sequences `dsts` continue from `src`'s last DMS decisions (parallel chains forked from one prompt). */
  forkDecisions(src: number, dsts: number[]): void {
    if (!this.alphaCarry || !this.alphaFork) return;
    const bytes = 4 * this.c.numLayers * this.c.numKvHeads;
    for (const s of [src, ...dsts]) {
      if (!Number.isInteger(s) || s < 0 || s >= this.sequences) throw new Error(`DMS decisions: sequence ${s} is outside the ${this.sequences} this forward pass keeps`);
    }
    const enc = new Encoder(this.gpu, 'dms decisions fork');
    enc.copy(this.alphaCarry, src * bytes, this.alphaFork, 0, bytes);
    for (const d of dsts) if (d !== src) enc.copy(this.alphaFork, 0, this.alphaCarry, d * bytes, bytes);
    enc.submit();
  }

  /** Writes the token ids and positions of a step's rows. */
  setRows(ids: ArrayLike<number>, positions: ArrayLike<number>): void {
    this.gpu.write(this.ids, Uint32Array.from(ids));
    this.setPositions(positions);
  }

  /** Writes the positions of a step's rows whose ids the step copies into `ids` itself (a sampled id on the GPU). */
  setPositions(positions: ArrayLike<number>): void {
    this.gpu.write(this.positions, Uint32Array.from(positions));
  }

  destroy(): void {
    for (const p of this.plans.values()) p.destroy();
    this.plans.clear();
    for (const b of [this.ids, this.positions, this.x, this.h, this.qkv, this.attn, this.tmp, this.gateUp, this.act, this.alpha, this.alphaNorm, this.alphaOwn, this.alphaCarry, this.alphaFork, this.last, this.logits, this.invFreq]) {
      if (b) this.gpu.destroy(b);
    }
  }
}
