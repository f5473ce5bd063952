/**
 * Parallel reasoning chains from one prompt (inference-time hyper-scaling, docs/hyperscaling.md).
 *
 * The prompt is prefilled once into KV sequence 0, then forked into sequences 1..W-1: the cache's fork is
 * copy-on-fork (each destination receives a full copy of sequence 0's compressed K/V, positions, DMS
 * marks and ring), so every chain owns its cache from then on and nothing is shared. Each forward step
 * then advances every live chain by one token (one row per chain, batched), each chain's row is sampled
 * with its own seeded PRNG (chain i uses seed + i unless `seeds` says otherwise), and a chain that
 * reaches a stop id or its length limit is left out of later steps. Its cache stays resident until the
 * call ends (memory is allocated up front anyway; peak KV tokens count it).
 *
 * With the same seed, chain i produces exactly the tokens `engine.generate(prompt, { seed: seed + i })`
 * would (test/hyperscale/chains.test.ts): one batched row is computed as a single-row step would compute it.
 *
 * Each chain is also scored: the log-probability of every token it produced under the model's
 * untempered distribution (log-softmax of the logits read back after each step), summed and averaged.
 */
import type { KvStats } from '../model/types';
import type { SamplingOptions, Timing } from '../protocol';
import type { Engine } from '../engine/engine';
import { EngineError } from '../engine/engine';
import { createRandom } from '../engine/random';

export interface ChainsOptions extends SamplingOptions {
  /** Number of chains W (≥ 1). The engine must hold ≥ W sequences and take ≥ W rows per step. */
  chains: number;
  /** Per-chain seeds; default seed + i. */
  seeds?: number[];
  /** Stop ids; the model's EOS ids by default. */
  stopIds?: number[];
  signal?: AbortSignal;
  /** Called for each new token of each chain, in step order. */
  onToken?: (chain: number, id: number) => void;
  /** Read the logits back to score chains (default true). */
  score?: boolean;
}

export interface Chain {
  ids: number[];
  finishReason: 'stop' | 'length' | 'abort';
  /** Σ log p(token) over the chain's tokens (0 when scoring is off). */
  logProb: number;
  /** logProb / tokens. */
  meanLogProb: number;
}

export interface ChainsResult {
  chains: Chain[];
  promptTokens: number;
  /** Forward steps after the prefill (each advances all live chains). */
  steps: number;
  timing: Timing;
  kv: KvStats;
}

/** log softmax(row)[id] of one logits row. */
export function tokenLogProb(logits: Float32Array, row: number, V: number, id: number): number {
  const o = row * V;
  let max = -Infinity;
  for (let i = 0; i < V; i++) if (logits[o + i] > max) max = logits[o + i];
  let sum = 0;
  for (let i = 0; i < V; i++) sum += Math.exp(logits[o + i] - max);
  return logits[o + id] - max - Math.log(sum);
}

export async function generateChains(engine: Engine, promptIds: number[], opts: ChainsOptions): Promise<ChainsResult> {
  const W = opts.chains;
  if (!Number.isInteger(W) || W < 1) throw new EngineError(`chains must be a positive integer, got ${W}`);
  if (W > engine.maxStepTokens) throw new EngineError(`${W} chains need ${W} rows per step; this engine takes ${engine.maxStepTokens} (prefillChunk)`);
  if (promptIds.length === 0) throw new EngineError('the prompt is empty');
  const V = engine.config.vocabSize;
  for (const id of promptIds) {
    if (!Number.isInteger(id) || id < 0 || id >= V) throw new EngineError(`token id ${id} is outside the vocabulary (0..${V - 1})`);
  }
  const maxContext = engine.info.maxContext;
  if (promptIds.length > maxContext) {
    throw new EngineError(`the conversation would reach ${promptIds.length} tokens, over this engine's context of ${maxContext}`);
  }
  const g = engine.generation;
  const sampling = {
    temperature: opts.temperature ?? g.temperature ?? 0,
    topK: opts.topK ?? g.topK ?? 0,
    topP: opts.topP ?? g.topP ?? 1,
  };
  const maxTokens = opts.maxTokens ?? 256;
  const stop = new Set(opts.stopIds ?? engine.config.eosTokenIds);
  const score = opts.score ?? true;
  const seed = opts.seed ?? 0;
  const random = Array.from({ length: W }, (_, i) => createRandom(opts.seeds?.[i] ?? seed + i));
  const P = promptIds.length;
  const chains: Chain[] = Array.from({ length: W }, () => ({ ids: [], finishReason: 'length', logProb: 0, meanLogProb: 0 }));

  engine.reset();
  try {
    const t0 = performance.now();
    // Prefill once in sequence 0, in the engine's chunks, keeping only the last row's logits.
    const chunk = engine.maxStepTokens;
    for (let i = 0; i < P; i += chunk) {
      const ids = promptIds.slice(i, i + chunk);
      engine.stepSequences([{ seq: 0, ids }], i + ids.length >= P ? 1 : 0);
    }
    if (W > 1) engine.forkSequence(0, Array.from({ length: W - 1 }, (_, i) => i + 1));
    // The first token of every chain is drawn from the prompt's last row.
    let rows = Array.from({ length: W }, (_, i) => i);
    let next = await engine.sampleRows(W, sampling, rows.map((c) => random[c]()), rows.map(() => 0));
    let logits = score ? await engine.readLogits(1) : null;
    let fromRow = rows.map(() => 0);
    const t1 = performance.now();
    let steps = 0;
    for (;;) {
      const feed: { seq: number; ids: number[] }[] = [];
      rows.forEach((c, r) => {
        const id = next[r];
        const chain = chains[c];
        const logProb = logits ? tokenLogProb(logits, fromRow[r], V, id) : 0;
        // Out of the vocabulary, or scored from NaN/Inf logits: the model's output is not finite (see Engine.checkSampled).
        if (id >= V || !Number.isFinite(logProb)) throw new EngineError(`the model produced non-finite logits at token ${chain.ids.length + 1} of chain ${c + 1}; generation stopped`);
        chain.ids.push(id);
        chain.logProb += logProb;
        opts.onToken?.(c, id);
        if (stop.has(id)) chain.finishReason = 'stop';
        else if (opts.signal?.aborted) chain.finishReason = 'abort';
        else if (chain.ids.length >= maxTokens || P + chain.ids.length - 1 >= maxContext) chain.finishReason = 'length';
        else feed.push({ seq: c, ids: [id] });
      });
      if (feed.length === 0) break;
      engine.stepSequences(feed);
      steps++;
      rows = feed.map((f) => f.seq);
      fromRow = rows.map((_, r) => r);
      [next, logits] = await Promise.all([
        engine.sampleRows(rows.length, sampling, rows.map((c) => random[c]())),
        score ? engine.readLogits(rows.length) : Promise.resolve(null),
      ]);
    }
    const t2 = performance.now();
    for (const c of chains) c.meanLogProb = c.ids.length > 0 ? c.logProb / c.ids.length : 0;
    const decoded = chains.reduce((n, c) => n + Math.max(0, c.ids.length - 1), 0);
    const kv = await engine.kvStats();
    return {
      chains,
      promptTokens: P,
      steps,
      timing: { prefillMs: t1 - t0, decodeMs: t2 - t1, decodeTokensPerSecond: decoded > 0 ? (decoded * 1000) / (t2 - t1) : 0 },
      kv,
    };
  } finally {
    // The chains' sequences are not a conversation the engine can continue.
    engine.reset();
  }
}
