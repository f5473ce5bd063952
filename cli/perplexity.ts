/** `dms perplexity`: teacher-forced perplexity of a text file under a KV policy. */
import { readFile } from 'node:fs/promises';
import { Engine } from '../worker/engine/engine';
import { nodeGpu } from '../worker/gpu/node';
import { KV_DTYPES } from '../worker/model/dtype';
import { choiceArg, intArg, parseArgs, UsageError } from './args';
import { budgetIgnored, checkBudget, POLICIES, WEIGHTS } from './generate';
import { modelSource, netOptions } from './model-source';

/** Mean negative log-likelihood (nats) of the next token, from one step's logits rows. */
export function addNll(logits: Float32Array, V: number, rows: number, targets: (row: number) => number | undefined, acc: { nll: number; n: number }): void {
  for (let r = 0; r < rows; r++) {
    const target = targets(r);
    if (target === undefined) continue;
    let max = -Infinity;
    for (let i = 0; i < V; i++) max = Math.max(max, logits[r * V + i]);
    let sum = 0;
    for (let i = 0; i < V; i++) sum += Math.exp(logits[r * V + i] - max);
    acc.nll += Math.log(sum) + max - logits[r * V + target];
    acc.n++;
  }
}

export async function perplexityCommand(argv: string[]): Promise<void> {
  const { values, switches } = parseArgs(argv, {
    values: ['model', 'timeout', 'file', 'max-tokens', 'weights', 'kv', 'kv-budget', 'kv-dtype', 'step'],
    switches: ['json'],
  });
  const model = values.get('model');
  const file = values.get('file');
  if (!model || !file) throw new UsageError('--model and --file are required');
  const maxTokens = intArg(values, 'max-tokens', 2, 1024)!;
  const policy = choiceArg(values, 'kv', POLICIES);
  checkBudget(policy, intArg(values, 'kv-budget', 1));
  const gpu = await nodeGpu();
  const engine = await Engine.load(gpu, modelSource(model, netOptions(values)), {
    weights: choiceArg(values, 'weights', WEIGHTS),
    kv: policy,
    kvBudget: intArg(values, 'kv-budget', 1),
    kvDtype: choiceArg(values, 'kv-dtype', KV_DTYPES),
    maxContext: maxTokens,
  });
  const ignored = budgetIgnored(intArg(values, 'kv-budget', 1), engine);
  if (ignored) process.stderr.write(`warning: ${ignored}\n`);
  if (!engine.tokenizer) throw new Error(`${model} has no tokenizer.json`);
  const ids = engine.tokenizer.encode(await readFile(file, 'utf8'), true).slice(0, maxTokens);
  if (ids.length < 2) throw new Error(`${file} has fewer than 2 tokens`);
  // Training-free policies decide per decode step, so they are scored token by token; full and DMS
  // caches are exact under chunked prefill.
  const step = intArg(values, 'step', 1, ['window', 'tova', 'h2o'].includes(engine.policy) ? 1 : undefined);
  const V = engine.config.vocabSize;
  const acc = { nll: 0, n: 0 };
  await engine.scan(ids, (logits, start, rows) => addNll(logits, V, rows, (r) => ids[start + r + 1], acc), step);
  const kv = await engine.kvStats();
  const ppl = Math.exp(acc.nll / acc.n);
  if (switches.has('json')) process.stdout.write(JSON.stringify({ ppl, tokens: ids.length, kv, adapter: gpu.caps.adapter }) + '\n');
  else process.stdout.write(`perplexity ${ppl.toFixed(3)} over ${ids.length} tokens; kv ${kv.policy}: peak ${kv.peakTokens} vs ${kv.peakTokensFull} full (${kv.compression.toFixed(2)}x)\n`);
  engine.destroy();
}
