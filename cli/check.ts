/**
 * `dms check`: the engine's fast paths against the plain ones on this device, as ggml's test-backend-ops
 * checks every backend. A small random model with the head layout of Qwen3-8B (32 query heads of 128, 8
 * KV heads) runs the same prompt and decode steps twice: with the defaults (fused decode matvecs, the
 * decode attention kernel, the prefill GEMM, replayed step plans) and with the paths they replace (tiled
 * kernels with separate norm/add/activation dispatches, the general attention kernel, every step
 * recorded), which the unit tests check against the CPU references. Every step's logits must agree.
 * Then each weight format's projections against the CPU reference itself (`weightCases`): rows of typical
 * weights beside rows so small that their q8/q4 scales are f16 subnormals, through the decode matvec, the
 * tiled kernel and the prefill GEMM, which no comparison of two GPU paths can see a driver flush.
 * Run it where the unit tests cannot (the GPU machine: subgroups of 32, other drivers).
 */
import { randomWeights } from '../worker/bench/random-weights';
import type { Gpu } from '../worker/gpu/context';
import { Encoder } from '../worker/gpu/encoder';
import { linear } from '../worker/kernels/linear';
import { packRows, uploadMatrix } from '../worker/load/pack';
import { destroyWeights } from '../worker/load/weights';
import { createRandom } from '../worker/engine/random';
import { linearRef } from '../worker/reference/linear';
import { dequantizeRows } from '../worker/reference/quant';
import { applyTuning, TUNING_PARAMS, TuningError } from '../worker/bench/tuning';
import { SHAPES, withDms } from '../worker/bench/shapes';
import { Engine } from '../worker/engine/engine';
import { forwardTuning } from '../worker/engine/forward';
import { nodeGpu } from '../worker/gpu/node';
import { decodeTuning } from '../worker/kernels/attention';
import { linearTuning } from '../worker/kernels/linear';
import type { KvDtype, KvPolicyName, WeightFormat } from '../worker/model/types';
import { choiceListArg, parseArgs, UsageError } from './args';
import { KV_DTYPES } from '../worker/model/dtype';
import { WEIGHTS } from './generate';

export interface CheckCase {
  weights: WeightFormat;
  kv: KvPolicyName;
  kvDtype: KvDtype;
  prompt: number;
  /** Worst |fast - plain| / max(1, max |plain|) over the prefill's logits and every decode step's. */
  worst: number;
  steps: number;
  tolerance: number;
  ok: boolean;
}

/**
 * The paths differ in summation order only: 2e-5 apart with f16 / f32 K/V (lavapipe, H100); dropping one key of
 * 80 moves 1e-3-1e-1. Quantized K/V widen it: where the two paths' projections differ in their last bits
 * (every weight format but q4, whose paths agree to ~1e-6), a K or V value within rounding of a code boundary
 * takes the neighbouring code in one path, and one code step is 1/127 (q8) or 1/8 (q4) of its row's or
 * block's largest value: up to 9e-4 (q8) and 2e-3 (q4) apart in the runs (docs/benchmarks.md, "H100 runs").
 */
const TOLERANCE: Record<KvDtype, number> = { f32: 2e-4, f16: 2e-4, q8: 2e-3, q4: 5e-3 };

/** Runs `f` with the plain paths (and restores the defaults, whatever happens). */
async function plain<T>(f: () => Promise<T>): Promise<T> {
  const saved = { mv: linearTuning.mv, gemm: linearTuning.gemm.minTokens, decode: decodeTuning.enabled, plans: forwardTuning.plans };
  // The plain paths are the same whatever the fast ones are tuned to.
  linearTuning.mv = false;
  linearTuning.gemm.minTokens = 0;
  decodeTuning.enabled = false;
  forwardTuning.plans = false;
  try {
    return await f();
  } finally {
    linearTuning.mv = saved.mv;
    linearTuning.gemm.minTokens = saved.gemm;
    decodeTuning.enabled = saved.decode;
    forwardTuning.plans = saved.plans;
  }
}

export interface WeightCase {
  weights: WeightFormat;
  tokens: number;
  /** Worst |gpu - cpu| / (3e-5 sum |x w|) over every output (what f32 sums of 320 terms may round away): ok at most 1. */
  worst: number;
  ok: boolean;
}

/** Deterministic values in [-scale, scale). */
function uniform(n: number, seed: number, scale: number): Float32Array {
  const next = createRandom(seed);
  return Float32Array.from({ length: n }, () => (next() * 2 - 1) * scale);
}

/**
 * `format`'s projection of 1 token (the decode matvec), 5 (the tiled kernel) and 37 (the prefill GEMM)
 * against linearRef over the weights as packed. Odd rows hold values of ~3e-5, whose q8 and q4 group
 * scales are f16 subnormals: a kernel whose driver flushes them reads zeros there.
 */
async function weightCases(gpu: Gpu, format: WeightFormat): Promise<WeightCase[]> {
  const rows = 64, cols = 320;
  const w = uniform(rows * cols, 7, 0.5);
  for (let r = 1; r < rows; r += 2) for (let c = 0; c < cols; c++) w[r * cols + c] *= 6e-5;
  const wq = dequantizeRows(packRows(w, rows, cols, format), rows, cols, format);
  const m = uploadMatrix(gpu, 'check:w', w, rows, cols, format);
  const out: WeightCase[] = [];
  for (const tokens of [1, 5, 37]) {
    const x = uniform(tokens * cols, tokens, 2);
    const bx = gpu.upload('check:x', x);
    const by = gpu.buffer('check:y', tokens * rows * 4);
    const enc = new Encoder(gpu, 'check weights');
    linear(enc, m, bx, by, tokens);
    enc.submit();
    const got = await gpu.readF32(by, tokens * rows);
    gpu.destroy(bx);
    gpu.destroy(by);
    const want = linearRef(x, wq, rows, cols, tokens);
    let worst = 0;
    for (let t = 0; t < tokens; t++) {
      for (let r = 0; r < rows; r++) {
        let mag = 0;
        for (let c = 0; c < cols; c++) mag += Math.abs(x[t * cols + c] * wq[r * cols + c]);
        const i = t * rows + r;
        const e = Math.abs(got[i] - want[i]) / (3e-5 * mag + 1e-30);
        worst = Number.isNaN(e) ? Infinity : Math.max(worst, e);
      }
    }
    out.push({ weights: format, tokens, worst, ok: worst <= 1 });
  }
  destroyWeights(gpu, [m], []);
  return out;
}

function worstDiff(a: Float32Array, b: Float32Array): number {
  let scale = 1, diff = 0;
  for (let i = 0; i < a.length; i++) {
    scale = Math.max(scale, Math.abs(b[i]));
    const d = Math.abs(a[i] - b[i]);
    diff = Number.isNaN(d) ? Infinity : Math.max(diff, d);
  }
  return diff / scale;
}

export async function checkCommand(argv: string[]): Promise<void> {
  const { values, switches } = parseArgs(argv, { values: ['weights', 'kv-dtype', 'prompt', 'steps', ...TUNING_PARAMS], switches: ['json'] });
  // The fast paths can be tuned as in `dms bench` (worker/bench/tuning.ts), to check a variant before timing it.
  let tuning;
  try {
    tuning = applyTuning((name) => values.get(name));
  } catch (e) {
    throw e instanceof TuningError ? new UsageError(e.message) : e;
  }
  const formats = choiceListArg(values, 'weights', WEIGHTS, 'q4,q8,f16,f32');
  const kvDtypes = choiceListArg(values, 'kv-dtype', KV_DTYPES, 'f16');
  const prompts = (values.get('prompt') ?? '80,400').split(',').map(Number);
  const steps = Number(values.get('steps') ?? 16);
  if (!(prompts.every((n) => Number.isInteger(n) && n >= 2) && Number.isInteger(steps) && steps >= 1)) throw new UsageError('--prompt (>= 2, a comma list) and --steps (>= 1) are token counts');
  const gpu = await nodeGpu();
  const longest = Math.max(...prompts) + steps + 8;
  const config = withDms({ ...SHAPES['qwen3-8b'], hiddenSize: 512, intermediateSize: 1024, numLayers: 2, vocabSize: 4096, maxPositionEmbeddings: longest }, 16, 4);
  let seed = 12345;
  const cases: CheckCase[] = [];
  for (const format of formats) {
    const w = randomWeights(gpu, config, format);
    for (const kvDtype of kvDtypes) for (const prompt of prompts) for (const kv of ['full', 'dms'] as const) {
      const ids = Array.from({ length: prompt }, () => (seed = (seed * 1103515245 + 12345) >>> 0) % config.vocabSize);
      const make = () => Engine.assemble(gpu, 'check', config, {}, null, w, { weights: format, kv, kvDtype, maxContext: prompt + steps + 8, prefillChunk: 64 });
      const fast = make();
      const ref = make();
      let worst = 0;
      let next = (await fast.step(ids)).id;
      await plain(() => ref.step(ids));
      worst = Math.max(worst, worstDiff(await fast.readLogits(1), await ref.readLogits(1)));
      for (let i = 0; i < steps; i++) {
        const id = next;
        next = (await fast.step([id])).id;
        await plain(() => ref.step([id]));
        worst = Math.max(worst, worstDiff(await fast.readLogits(1), await ref.readLogits(1)));
      }
      fast.release();
      ref.release();
      const tolerance = TOLERANCE[kvDtype];
      const c = { weights: format, kv, kvDtype, prompt, worst, steps, tolerance, ok: worst <= tolerance };
      cases.push(c);
      if (!switches.has('json')) process.stdout.write(`${c.ok ? 'ok  ' : 'FAIL'} ${format} ${kv} K/V ${kvDtype}: prefill ${prompt} + ${steps} decode steps, worst relative logit difference ${worst.toExponential(2)} (tolerance ${tolerance})\n`);
    }
  }
  const weights: WeightCase[] = [];
  for (const format of formats) {
    for (const c of await weightCases(gpu, format)) {
      weights.push(c);
      if (!switches.has('json')) process.stdout.write(`${c.ok ? 'ok  ' : 'FAIL'} ${format} weights against the CPU, ${c.tokens} token${c.tokens > 1 ? 's' : ''} (typical rows and rows with f16-subnormal scales): worst ${c.worst.toFixed(3)} of the tolerance\n`);
    }
  }
  const failed = cases.filter((c) => !c.ok).length + weights.filter((c) => !c.ok).length;
  const total = cases.length + weights.length;
  if (switches.has('json')) process.stdout.write(JSON.stringify({ adapter: gpu.caps.adapter, subgroupMinSize: gpu.caps.subgroupMinSize, tuning, cases, weights }) + '\n');
  else process.stdout.write(`${gpu.caps.adapter}: ${total - failed} passed, ${failed} failed\n`);
  if (failed) throw new Error(`${failed} check(s) failed`);
}
