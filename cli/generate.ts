/** `dms generate`: one prompt in, generated tokens out. */
import { Engine } from '../worker/engine/engine';
import { nodeGpu } from '../worker/gpu/node';
import type { KvPolicyName, WeightFormat } from '../worker/model/types';
import { choiceArg, intArg, numArg, parseArgs, UsageError } from './args';
import { modelSource } from './model-source';

export const WEIGHTS: readonly WeightFormat[] = ['f32', 'f16', 'q8', 'q4'];
export const POLICIES: readonly KvPolicyName[] = ['full', 'dms', 'window', 'tova', 'h2o'];

/** Training-free policies keep a fixed number of tokens, so they need one. */
export function checkBudget(policy: string | undefined, budget: number | undefined): void {
  if ((policy === 'window' || policy === 'tova' || policy === 'h2o') && budget === undefined) {
    throw new UsageError(`--kv ${policy} needs --kv-budget N (tokens kept per layer and KV head)`);
  }
}

export async function generateCommand(argv: string[]): Promise<void> {
  const { values, switches } = parseArgs(argv, {
    values: ['model', 'prompt', 'prompt-ids', 'max-new-tokens', 'temperature', 'top-p', 'top-k', 'seed', 'weights', 'kv', 'kv-budget', 'max-context'],
    switches: ['chat', 'json'],
  });
  const model = values.get('model');
  if (!model) throw new UsageError('--model is required');
  const prompt = values.get('prompt');
  const promptIds = values.get('prompt-ids');
  if ((prompt === undefined) === (promptIds === undefined)) throw new UsageError('give exactly one of --prompt and --prompt-ids');
  if (switches.has('chat') && prompt === undefined) throw new UsageError('--chat needs --prompt');
  const maxTokens = intArg(values, 'max-new-tokens', 1, 64)!;
  const kvBudget = intArg(values, 'kv-budget', 1);
  checkBudget(values.get('kv'), kvBudget);
  const gpu = await nodeGpu();
  const engine = await Engine.load(gpu, modelSource(model), {
    weights: choiceArg(values, 'weights', WEIGHTS),
    kv: choiceArg(values, 'kv', POLICIES),
    kvBudget,
    maxContext: intArg(values, 'max-context', 16),
  });
  let ids: number[];
  if (promptIds !== undefined) {
    ids = promptIds.split(',').map((s) => {
      const n = Number(s.trim());
      if (!Number.isInteger(n) || n < 0) throw new UsageError(`--prompt-ids: "${s}" is not a token id`);
      return n;
    });
  } else {
    const tok = engine.tokenizer;
    if (!tok) throw new Error(`${model} has no tokenizer.json: use --prompt-ids`);
    const text = switches.has('chat') ? tok.applyChatTemplate([{ role: 'user', content: prompt! }], { addGenerationPrompt: true }) : prompt!;
    ids = tok.encode(text, !switches.has('chat'));
  }
  const decoder = engine.tokenizer?.createStreamDecoder();
  const json = switches.has('json');
  const result = await engine.generate(ids, {
    maxTokens,
    temperature: numArg(values, 'temperature', 0, 100),
    topP: numArg(values, 'top-p', 0, 1),
    topK: intArg(values, 'top-k', 0),
    seed: intArg(values, 'seed', 0),
    onToken: (id) => {
      if (!json && decoder) process.stdout.write(decoder.push(id));
    },
  });
  const text = engine.tokenizer ? engine.tokenizer.decode(result.ids) : '';
  if (json) {
    const out = {
      model,
      promptTokens: ids.length,
      generated: result.ids,
      text,
      finishReason: result.finishReason,
      kv: result.kv,
      timing: result.timing,
      weights: engine.info.weights,
      adapter: gpu.caps.adapter,
      load: engine.loadStats,
    };
    process.stdout.write(JSON.stringify(out) + '\n');
  } else {
    if (decoder) process.stdout.write(decoder.flush() + '\n');
    else process.stdout.write(result.ids.join(',') + '\n');
    const k = result.kv;
    process.stderr.write(
      `[${result.ids.length} tokens, ${result.finishReason}; prefill ${result.timing.prefillMs.toFixed(0)} ms, ` +
        `decode ${result.timing.decodeTokensPerSecond.toFixed(1)} tok/s; kv ${k.policy}: peak ${k.peakTokens} tokens vs ${k.peakTokensFull} full (${k.compression.toFixed(2)}x); ${gpu.caps.adapter}]\n`,
    );
  }
  engine.destroy();
}
