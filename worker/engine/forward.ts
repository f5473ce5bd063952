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
 * DMS decisions: q/k norm + RoPE writes each row's decision into `alpha`; the KV cache applies row t's to
 * the token before it (NVIDIA's shift by one) or, for a FastDMS checkpoint (dms_metadata.json), to row t's
 * own token, carrying each sequence's last decision to its next step itself (worker/kv/cache.ts, write()).
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
      qkNormRope(enc, this.qkv, this.positions, this.invFreq, this.alpha, {
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
    for (const b of [this.ids, this.positions, this.x, this.h, this.qkv, this.attn, this.tmp, this.gateUp, this.act, this.alpha, this.alphaNorm, this.last, this.logits, this.invFreq]) {
      if (b) this.gpu.destroy(b);
    }
  }
}
