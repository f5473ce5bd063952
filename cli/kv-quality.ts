/**
 * `dms kv-quality`: what a K/V storage type costs in quality against a reference type (the first of
 * --kv-dtype, f16 by default), on one text under one KV policy (docs/kv-cache.md, "Quality and gains"):
 * teacher-forced perplexity over --max-tokens tokens; the mean per-token KL divergence KL(ref || dtype) of
 * the next-token distributions; the share of positions whose argmax agrees (teacher-forced); and greedy
 * generation of --greedy tokens from the text's first --prompt tokens: the share of positions whose token
 * agrees and the first one that differs. Also the bytes of K and V per resident token and KV head.
 */
import { readFile } from 'node:fs/promises';
import { Engine } from '../worker/engine/engine';
import { nodeGpu } from '../worker/gpu/node';
import { KV_DTYPES } from '../worker/model/dtype';
import type { KvDtype } from '../worker/model/types';
import { choiceArg, choiceListArg, intArg, parseArgs, UsageError } from './args';
import { checkBudget, POLICIES, WEIGHTS } from './generate';
import { modelSource, netOptions } from './model-source';

export interface KvQualityRow {
  kvDtype: KvDtype;
  ppl: number;
  /** ppl / the reference's ppl - 1. */
  pplDelta: number;
  /** Mean over positions of KL(ref || this), nats. */
  klMean: number;
  klMax: number;
  /** Share of teacher-forced positions whose argmax equals the reference's. */
  argmaxAgreement: number;
  /** Greedy generation: share of positions equal to the reference's tokens, and the first that differs (-1: none). */
  greedyAgreement: number;
  greedyFirstDiff: number;
  bytesPerToken: number;
  /** bytesPerToken / the reference's. */
  bytesRatio: number;
}

/** Log-softmax of each row of logits [rows][V], in place. */
function logSoftmax(x: Float32Array, V: number): Float32Array {
  for (let r = 0; r < x.length / V; r++) {
    let max = -Infinity;
    for (let i = 0; i < V; i++) max = Math.max(max, x[r * V + i]);
    let sum = 0;
    for (let i = 0; i < V; i++) sum += Math.exp(x[r * V + i] - max);
    const lse = Math.log(sum) + max;
    for (let i = 0; i < V; i++) x[r * V + i] -= lse;
  }
  return x;
}

function argmax(x: Float32Array, o: number, V: number): number {
  let best = 0;
  for (let i = 1; i < V; i++) if (x[o + i] > x[o + best]) best = i;
  return best;
}

export async function kvQualityCommand(argv: string[]): Promise<void> {
  const { values, switches } = parseArgs(argv, {
    values: ['model', 'timeout', 'file', 'max-tokens', 'weights', 'kv', 'kv-budget', 'kv-dtype', 'prompt', 'greedy'],
    switches: ['json'],
  });
  const model = values.get('model');
  const file = values.get('file');
  if (!model || !file) throw new UsageError('--model and --file are required');
  const maxTokens = intArg(values, 'max-tokens', 2, 1024)!;
  const promptLen = intArg(values, 'prompt', 1, 64)!;
  const greedy = intArg(values, 'greedy', 0, 256)!;
  const policy = choiceArg(values, 'kv', POLICIES) ?? 'dms';
  const budget = intArg(values, 'kv-budget', 1);
  checkBudget(policy, budget);
  const dtypes = choiceListArg(values, 'kv-dtype', KV_DTYPES, 'f16,q8,q4');
  const gpu = await nodeGpu();
  const rows: KvQualityRow[] = [];
  let ref: { logp: Float32Array; ppl: number; greedy: number[]; bytes: number } | null = null;
  for (const kvDtype of dtypes) {
    const engine = await Engine.load(gpu, modelSource(model, netOptions(values)), {
      weights: choiceArg(values, 'weights', WEIGHTS), kv: policy, kvBudget: budget, kvDtype,
      maxContext: Math.max(maxTokens, promptLen + greedy),
    });
    if (!engine.tokenizer) throw new Error(`${model} has no tokenizer.json`);
    const V = engine.config.vocabSize;
    const ids = engine.tokenizer.encode(await readFile(file, 'utf8'), true).slice(0, maxTokens);
    if (ids.length < 2) throw new Error(`${file} has fewer than 2 tokens`);
    // Training-free policies decide per decode step: scored token by token, as `perplexity` does.
    const step = ['window', 'tova', 'h2o'].includes(engine.policy) ? 1 : undefined;
    const logp = logSoftmax(await engine.logits(ids, step), V);
    const n = ids.length - 1;
    let nll = 0;
    for (let r = 0; r < n; r++) nll -= logp[r * V + ids[r + 1]];
    const ppl = Math.exp(nll / n);
    const gen = greedy > 0 ? (await engine.generate(ids.slice(0, promptLen), { maxTokens: greedy, temperature: 0, stopIds: [] })).ids : [];
    const bytes = (await engine.kvStats()).bytesPerToken ?? 0;
    engine.destroy();
    if (!ref) ref = { logp, ppl, greedy: gen, bytes };
    let kl = 0, klMax = 0, agree = 0;
    for (let r = 0; r < n; r++) {
      let k = 0;
      for (let i = 0; i < V; i++) {
        const p = ref.logp[r * V + i];
        k += Math.exp(p) * (p - logp[r * V + i]);
      }
      kl += k;
      klMax = Math.max(klMax, k);
      if (argmax(ref.logp, r * V, V) === argmax(logp, r * V, V)) agree++;
    }
    let same = 0, firstDiff = -1;
    for (let i = 0; i < gen.length; i++) {
      if (gen[i] === ref.greedy[i]) same++;
      else if (firstDiff < 0) firstDiff = i;
    }
    const row: KvQualityRow = {
      kvDtype, ppl, pplDelta: ppl / ref.ppl - 1, klMean: kl / n, klMax, argmaxAgreement: agree / n,
      greedyAgreement: gen.length ? same / gen.length : 1, greedyFirstDiff: firstDiff, bytesPerToken: bytes, bytesRatio: bytes / ref.bytes,
    };
    rows.push(row);
    if (!switches.has('json')) {
      process.stdout.write(
        `${kvDtype}: perplexity ${ppl.toFixed(3)} (${(100 * row.pplDelta).toFixed(2)}% vs ${dtypes[0]}) over ${ids.length} tokens, ` +
        `KL ${row.klMean.toExponential(2)} nats/token (max ${klMax.toExponential(2)}), argmax agreement ${(100 * row.argmaxAgreement).toFixed(1)}%, ` +
        `greedy ${gen.length} tokens agreement ${(100 * row.greedyAgreement).toFixed(1)}% (first difference ${firstDiff}), ` +
        `${bytes} B of K/V per token and KV head (${row.bytesRatio.toFixed(3)}x)\n`,
      );
    }
  }
  if (switches.has('json')) {
    process.stdout.write(JSON.stringify({ model, file, kv: policy, kvBudget: budget ?? null, maxTokens, promptTokens: promptLen, greedyTokens: greedy, reference: dtypes[0], rows, adapter: gpu.caps.adapter }) + '\n');
  }
}
