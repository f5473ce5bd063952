import source from '../../shaders/sample.wgsl';
import { params, type Encoder } from '../gpu/encoder';
import { specialize } from '../gpu/wgsl';

/** Tests set `allowSubgroups = false` to exercise the workgroup-memory reductions on adapters with subgroups. */
export const sampleTuning = { allowSubgroups: true };

export interface SampleOptions {
  /** <= 0: greedy. */
  temperature: number;
  /** <= 0 or >= vocab: no limit; 1: greedy. */
  topK: number;
  /** >= 1: no limit. */
  topP: number;
  /** Uniform random number in [0, 1). */
  u: number;
}

/** The largest f32 below 1: u is clamped to it so that u * total stays below the total. */
const BELOW_ONE = 1 - 2 ** -24;

/**
 * Samples one token from logits[logitsOffset .. logitsOffset + vocab) (f32) into out[outIndex] (u32), in one
 * workgroup. Greedy (temperature <= 0 or topK == 1): the argmax, lowest index on ties. Else softmax of
 * logits / temperature restricted to the tokens whose logit is >= the topK-th largest logit (ties kept), then to
 * the tokens whose logit is >= the largest logit value v such that the tokens >= v hold at least topP of that
 * mass (ties kept), renormalised; the token is the first (in index order) whose cumulative mass exceeds u * total.
 * worker/reference/sample.ts is the same rule on the CPU.
 */
export function sample(enc: Encoder, logits: GPUBuffer, logitsOffset: number, vocab: number, out: GPUBuffer, outIndex: number, o: SampleOptions): void {
  if (!(vocab > 0)) throw new Error(`sample: vocab ${vocab} must be positive`);
  const greedy = !(o.temperature > 0) || o.topK === 1;
  const topK = o.topK > 0 && o.topK < vocab ? Math.floor(o.topK) : 0;
  const topP = Number.isNaN(o.topP) ? 1 : Math.min(1, o.topP);
  const u = Math.min(BELOW_ONE, Math.max(0, Number.isFinite(o.u) ? o.u : 0));
  const subgroups = enc.gpu.caps.subgroups && sampleTuning.allowSubgroups;
  const pipeline = enc.gpu.pipeline(subgroups ? 'sample sg' : 'sample', specialize(source, { SUBGROUPS: subgroups }));
  const p = params(logitsOffset, vocab, outIndex, topK, { f32: greedy ? 1 : o.temperature }, { f32: topP }, { f32: u }, greedy ? 1 : 0);
  enc.dispatch(pipeline, p, [logits, out], [1]);
}
