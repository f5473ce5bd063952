/**
 * The benchmark page's run (bench.html): the rows of `dms bench --shape` (cli/bench.ts) measured on the
 * browser's navigator.gpu, in the module worker ./bench-worker.ts (as the app runs the engine) or on the
 * page's main thread. Same steps as the CLI: measureBandwidth, randomWeights of the shape with the DMS
 * configuration (window 256, 1/8 of the older tokens kept), benchRows, optionally timeToFirstToken; the
 * tuning knobs by name (applyTuning). The result is the CLI's `--json` object plus where it ran.
 */
import { Gpu } from '../gpu/context';
import type { KvDtype, KvPolicyName, WeightFormat } from '../model/types';
import { randomWeights } from './random-weights';
import { benchRows, formatRow, measureBandwidth, timeToFirstToken, type BenchRow } from './rows';
import { SHAPES, withDms } from './shapes';
import { applyTuning, TUNING_PARAMS, type TuningInUse } from './tuning';

/** The tuning knobs the page takes as URL parameters (names as `dms bench` flags; see ./tuning.ts). */

const WEIGHTS: readonly WeightFormat[] = ['f32', 'f16', 'q8', 'q4'];

export class BenchParamError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BenchParamError';
  }
}

/** What the page measures, from its URL parameters (defaults as `dms bench --shape`). */
export interface PageBenchParams {
  shape: string;
  weights: WeightFormat;
  contexts: number[];
  policies: KvPolicyName[];
  kvDtypes: KvDtype[];
  steps: number;
  prefill: number;
  /** Prompt tokens of the time-to-first-token run; 0 skips it. */
  ttft: number;
  evictRate: number;
  window: number;
  /** Adapter information only, no model. */
  probe: boolean;
}

function int(q: URLSearchParams, name: string, min: number, fallback: number): number {
  const v = q.get(name);
  if (v === null || v === '') return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new BenchParamError(`${name} must be an integer >= ${min}, got "${v}"`);
  return n;
}

function list<T extends string>(q: URLSearchParams, name: string, allowed: readonly T[], fallback: string): T[] {
  return (q.get(name) || fallback).split(',').map((v) => {
    if (!allowed.includes(v as T)) throw new BenchParamError(`${name} must be ${allowed.join(' or ')} (a comma list), got "${v}"`);
    return v as T;
  });
}

export function parseBenchParams(q: URLSearchParams): PageBenchParams {
  const shape = q.get('shape') || 'tiny';
  if (!SHAPES[shape]) throw new BenchParamError(`shape must be one of ${Object.keys(SHAPES).join(', ')}, got "${shape}"`);
  const weights = q.get('weights') || 'q4';
  if (!WEIGHTS.includes(weights as WeightFormat)) throw new BenchParamError(`weights must be one of ${WEIGHTS.join(', ')}, got "${weights}"`);
  const contexts = (q.get('context') || '1024').split(',').map((v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new BenchParamError(`context: "${v}" is not a token count`);
    return n;
  });
  const evict = q.get('dms-evict-rate');
  const evictRate = evict === null || evict === '' ? 0.875 : Number(evict);
  if (!(evictRate >= 0 && evictRate <= 0.999)) throw new BenchParamError(`dms-evict-rate must be a number in [0, 0.999], got "${evict}"`);
  return {
    shape,
    weights: weights as WeightFormat,
    contexts,
    policies: list(q, 'kv', ['full', 'dms'] as const, 'full,dms'),
    kvDtypes: list(q, 'kv-dtype', ['f16', 'f32', 'q8', 'q4'] as const, 'f16'),
    steps: int(q, 'steps', 1, 16),
    prefill: int(q, 'prefill', 1, shape === 'tiny' ? 64 : 512),
    ttft: int(q, 'ttft', 0, shape === 'tiny' ? 0 : 2048),
    evictRate,
    window: int(q, 'dms-window', 1, 256),
    probe: q.get('probe') === '1',
  };
}

/** The adapter as the page sees it (the same request options as Gpu.create). */
export interface AdapterReport {
  /** vendor, architecture, device, description joined, as `gpu.caps.adapter` and `dms bench --json` give it. */
  adapter: string | null;
  adapterInfo: {
    vendor: string;
    architecture: string;
    device: string;
    description: string;
    subgroupMinSize: number | null;
    subgroupMaxSize: number | null;
    isFallbackAdapter: boolean | null;
  } | null;
  /** The adapter's features, sorted. */
  features: string[];
  /** The adapter's limits. */
  limits: Record<string, number>;
}

export async function adapterReport(gpu: GPU | undefined): Promise<AdapterReport> {
  const a = gpu ? await gpu.requestAdapter({ powerPreference: 'high-performance' }) : null;
  if (!a) return { adapter: null, adapterInfo: null, features: [], limits: {} };
  const i = a.info;
  const limits: Record<string, number> = {};
  // GPUSupportedLimits keeps its values as prototype getters: for-in lists them, Object.keys does not.
  for (const k in a.limits) {
    const v = (a.limits as unknown as Record<string, unknown>)[k];
    if (typeof v === 'number') limits[k] = v;
  }
  return {
    adapter: [i.vendor, i.architecture, i.device, i.description].filter(Boolean).join(' ') || 'unknown adapter',
    adapterInfo: {
      vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description,
      subgroupMinSize: i.subgroupMinSize ?? null, subgroupMaxSize: i.subgroupMaxSize ?? null,
      isFallbackAdapter: i.isFallbackAdapter ?? null,
    },
    features: [...a.features].sort(),
    limits,
  };
}

/** The page's JSON: `dms bench --json`'s object (adapter, bandwidthGBps, tuning, ttft, rows) plus where it ran. */
export interface PageBenchResult extends AdapterReport {
  bandwidthGBps?: number;
  tuning?: TuningInUse;
  ttft?: { prompt: number; ms: number; tokensPerSecond: number } | null;
  rows?: BenchRow[];
  runner: 'worker' | 'page';
  userAgent: string;
  /** Whether the page is cross-origin isolated (COOP/COEP): performance.now() is then precise to ~5 µs, not 100 µs. */
  crossOriginIsolated: boolean;
  /** The URL parameters as given. */
  params: Record<string, string>;
  /** The device's features (what Gpu.create asked for of the adapter's), sorted. */
  deviceFeatures?: string[];
  probe?: true;
  /** WebGPU errors no scope caught (validation, out of memory) during the run; any makes the run an error. */
  gpuErrors?: string[];
  /** Wall time of the whole run, ms. */
  ms: number;
  error?: string;
}

export interface BenchProgress {
  /** A line of progress, as `dms bench` prints it (a row's line is formatRow's text, also given to row()). */
  log(line: string): void;
  row?(row: BenchRow, text: string): void;
}

/**
 * Runs the benchmark for the URL parameters `search` and returns its JSON; never throws (an error is the
 * result's `error`, next to whatever was measured before it).
 */
export async function runPageBench(search: string, runner: 'worker' | 'page', progress: BenchProgress): Promise<PageBenchResult> {
  const t0 = performance.now();
  const q = new URLSearchParams(search);
  const out: PageBenchResult = {
    adapter: null, adapterInfo: null, features: [], limits: {},
    runner, userAgent: navigator.userAgent, crossOriginIsolated: globalThis.crossOriginIsolated === true,
    params: Object.fromEntries(q), ms: 0,
  };
  let gpu: Gpu | null = null;
  try {
    const p = parseBenchParams(q);
    const tuning = applyTuning((name) => ((TUNING_PARAMS as readonly string[]).includes(name) ? q.get(name) || undefined : undefined));
    Object.assign(out, await adapterReport(navigator.gpu));
    progress.log(`adapter: ${out.adapter ?? 'none'} (in the ${runner === 'worker' ? 'module worker' : "page's main thread"})`);
    if (p.probe) {
      out.probe = true;
      if (!out.adapter) out.error = navigator.gpu ? 'WebGPU found no adapter' : 'no navigator.gpu here';
      return out;
    }
    gpu = await Gpu.create(navigator.gpu);
    const gpuErrors: string[] = [];
    out.gpuErrors = gpuErrors;
    gpu.device.addEventListener('uncapturederror', (e) => {
      const message = (e as GPUUncapturedErrorEvent).error.message;
      if (gpuErrors.push(message) <= 3) progress.log(`WebGPU error: ${message}`);
    });
    out.deviceFeatures = [...gpu.device.features].sort();
    const config = withDms(SHAPES[p.shape], p.window, 1 / (1 - p.evictRate));
    progress.log('measuring the copy bandwidth…');
    const bandwidthGBps = await measureBandwidth(gpu, Math.min(1 << 30, gpu.caps.maxStorageBufferBindingSize / 2));
    out.bandwidthGBps = bandwidthGBps;
    out.tuning = tuning;
    progress.log(`copy bandwidth ${bandwidthGBps.toFixed(2)} GB/s; subgroups ${gpu.caps.subgroups}, shader-f16 ${gpu.caps.shaderF16}, timestamp-query ${gpu.device.features.has('timestamp-query')}; tuning ${JSON.stringify(tuning)}`);
    const tw = performance.now();
    const w = randomWeights(gpu, config, p.weights);
    await gpu.device.queue.onSubmittedWorkDone();
    progress.log(`random ${p.shape} weights, ${p.weights}: ${(w.bytes / 1e6).toFixed(1)} MB on the GPU in ${(performance.now() - tw).toFixed(0)} ms`);
    const rows: BenchRow[] = [];
    out.rows = rows;
    progress.log(`measuring ${p.contexts.length * p.policies.length * p.kvDtypes.length} rows: context ${p.contexts.join(', ')} x kv ${p.policies.join(', ')} x K/V ${p.kvDtypes.join(', ')}; ${p.steps} decode steps, prefill chunk ${p.prefill}…`);
    out.ttft = null;
    await benchRows(gpu, {
      name: p.shape, config, weights: w, format: p.weights, contexts: p.contexts, policies: p.policies, kvDtypes: p.kvDtypes,
      evictRate: p.evictRate, window: p.window, steps: p.steps, prefill: p.prefill, bandwidthGBps,
    }, (r) => {
      rows.push(r);
      const text = formatRow(r);
      progress.row?.(r, text);
      progress.log(text);
    });
    if (p.ttft > 0) {
      const t = await timeToFirstToken(gpu, { name: p.shape, config, weights: w, format: p.weights }, p.ttft, p.prefill);
      out.ttft = t;
      progress.log(`time to first token, ${t.prompt}-token prompt (chunks of ${p.prefill}): ${t.ms.toFixed(0)} ms (${t.tokensPerSecond.toFixed(0)} tok/s)`);
    }
    await gpu.device.queue.onSubmittedWorkDone();
    if (gpuErrors.length) throw new Error(`${gpuErrors.length} WebGPU error(s) during the run, the first: ${gpuErrors[0]}`);
  } catch (e) {
    out.error = e instanceof Error ? `${e.name === 'Error' ? '' : `${e.name}: `}${e.message}` : String(e);
    progress.log(`error: ${out.error}`);
  } finally {
    gpu?.device.destroy();
    out.ms = performance.now() - t0;
  }
  // The CLI's keys first, in its order, then the page's.
  const { adapter, bandwidthGBps, tuning, ttft, rows, ...rest } = out;
  return out.probe ? { adapter, ...rest } : { adapter, bandwidthGBps, tuning, ttft, rows, ...rest };
}
