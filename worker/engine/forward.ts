/**
 * The transformer forward pass for Qwen3 / Qwen2 / Llama, recorded into one Encoder per step.
 * Activation buffers are sized for `maxStepTokens` rows (the prefill chunk) and reused every step.
 */
import type { Gpu } from '../gpu/context';
import type { Encoder } from '../gpu/encoder';
import { add } from '../kernels/add';
import { embed } from '../kernels/embed';
import { linear } from '../kernels/linear';
import { qkNormRope } from '../kernels/qk-norm-rope';
import { rmsNorm } from '../kernels/rmsnorm';
import { siluMul } from '../kernels/silu-mul';
import type { KvCache, Segment } from '../kv/cache';
import type { ModelConfig } from '../model/types';
import { ropeInvFreq } from './rope';
import type { ModelWeights } from './weights';

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
   * the last `logitRows` rows (in row order) in `this.logits`.
   */
  encode(enc: Encoder, kv: KvCache, segments: Segment[], rows: number, logitRows: number): void {
    const c = this.c, H = c.hiddenSize, d = c.headDim, F = c.intermediateSize;
    if (rows > this.maxStepTokens) throw new Error(`step of ${rows} rows exceeds maxStepTokens ${this.maxStepTokens}`);
    if (logitRows > Math.min(rows, this.maxLogitRows)) throw new Error(`cannot produce ${logitRows} logit rows`);
    embed(enc, this.w.embed, this.ids, this.x, rows);
    kv.begin(enc, segments);
    for (let l = 0; l < c.numLayers; l++) {
      const L = this.w.layers[l];
      rmsNorm(enc, this.x, L.inputNorm, this.h, rows, H, c.rmsNormEps);
      linear(enc, L.qkv, this.h, this.qkv, rows, L.qkvBias);
      if (L.dmsAlpha && this.alpha && this.alphaNorm) {
        rmsNorm(enc, this.x, L.dmsAlpha.norm, this.alphaNorm, rows, H, c.rmsNormEps);
        linear(enc, L.dmsAlpha.proj, this.alphaNorm, this.alpha, rows);
      }
      qkNormRope(enc, this.qkv, this.positions, this.invFreq, this.alpha, {
        rows,
        numHeads: c.numHeads,
        numKvHeads: c.numKvHeads,
        headDim: d,
        eps: c.rmsNormEps,
        qNorm: L.qNorm,
        kNorm: L.kNorm,
        dms: c.dms && !c.dms.separateAlpha ? { scale: c.dms.alphaScale, offset: c.dms.alphaOffset } : null,
      });
      kv.write(enc, l, this.qkv, this.alpha);
      kv.attend(enc, l, this.qkv, this.attn);
      linear(enc, L.o, this.attn, this.tmp, rows);
      add(enc, this.x, this.tmp, rows * H);
      rmsNorm(enc, this.x, L.postNorm, this.h, rows, H, c.rmsNormEps);
      linear(enc, L.gateUp, this.h, this.gateUp, rows);
      siluMul(enc, this.gateUp, this.act, rows, F);
      linear(enc, L.down, this.act, this.tmp, rows);
      add(enc, this.x, this.tmp, rows * H);
    }
    kv.end(enc);
    if (logitRows > 0) {
      const first = rows - logitRows;
      enc.copy(this.x, first * H * 4, this.h, 0, logitRows * H * 4);
      rmsNorm(enc, this.h, this.w.finalNorm, this.last, logitRows, H, c.rmsNormEps);
      linear(enc, this.w.lmHead, this.last, this.logits, logitRows);
    }
  }

  /** Writes the token ids and positions of a step's rows. */
  setRows(ids: ArrayLike<number>, positions: ArrayLike<number>): void {
    this.gpu.write(this.ids, Uint32Array.from(ids));
    this.gpu.write(this.positions, Uint32Array.from(positions));
  }

  destroy(): void {
    for (const b of [this.ids, this.positions, this.x, this.h, this.qkv, this.attn, this.tmp, this.gateUp, this.act, this.alpha, this.alphaNorm, this.last, this.logits, this.invFreq]) {
      if (b) this.gpu.destroy(b);
    }
  }
}
