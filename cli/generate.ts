/** `dms generate`: one prompt in, generated tokens out. */
import { readFile } from 'node:fs/promises';
import { extractAnswer, vote } from '../worker/hyperscale/answers';
import { droppedNotice, fitConversation } from '../worker/fit-conversation';
import type { ChatMessage, ContextDropped } from '../worker/protocol';
import { generateChains } from '../worker/hyperscale/chains';
import { Engine } from '../worker/engine/engine';
import { budgetBytes, MB, plan, type MemoryLevel, type Plan } from '../worker/hyperscale/planner';
import { readModelConfig } from '../worker/model/config';
import { ModelTokenizer } from '../worker/model/tokenizer';
import { nodeGpu } from '../worker/gpu/node';
import { KV_DTYPES } from '../worker/model/dtype';
import type { KvPolicyName, WeightFormat } from '../worker/model/types';
import { formatBytes } from '../worker/store/errors';
import { choiceArg, intArg, numArg, parseArgs, UsageError } from './args';
import { modelSource, netOptions } from './model-source';

export const WEIGHTS: readonly WeightFormat[] = ['f32', 'f16', 'q8', 'q4'];
export const POLICIES: readonly KvPolicyName[] = ['full', 'dms', 'window', 'tova', 'h2o'];

/** Training-free policies keep a fixed number of tokens, so they need one; the full cache keeps every token, so it takes none. */
export function checkBudget(policy: string | undefined, budget: number | undefined): void {
  if ((policy === 'window' || policy === 'tova' || policy === 'h2o') && budget === undefined) {
    throw new UsageError(`--kv ${policy} needs --kv-budget N (tokens kept per layer and KV head)`);
  }
  if (policy === 'full' && budget !== undefined) {
    throw new UsageError('--kv full keeps every token, so --kv-budget has no effect on it; drop --kv-budget, or pick dms, window, tova or h2o');
  }
}

/** A warning when --kv-budget was given without --kv and the model's own policy (full: no DMS) ignores it. */
export function budgetIgnored(budget: number | undefined, engine: Engine): string | null {
  return budget !== undefined && engine.policy === 'full'
    ? `--kv-budget ${budget} is ignored: this model has no DMS, so its cache is full (every token kept); give --kv window, tova or h2o to cap it`
    : null;
}

/** `--prompt-ids 1,2,3`: every entry a token id; an empty list or entry is a usage error, not token 0. */
export function parsePromptIds(s: string): number[] {
  if (s.trim() === '') throw new UsageError('--prompt-ids is empty: give token ids such as 1,2,3');
  return s.split(',').map((part, i) => {
    const t = part.trim();
    if (t === '') throw new UsageError(`--prompt-ids: entry ${i + 1} of "${s}" is empty`);
    if (!/^\d+$/.test(t) || !Number.isSafeInteger(Number(t))) throw new UsageError(`--prompt-ids: "${t}" is not a token id`);
    return Number(t);
  });
}

export async function generateCommand(argv: string[]): Promise<void> {
  const { values, switches } = parseArgs(argv, {
    values: ['model', 'timeout', 'prompt', 'prompt-ids', 'messages', 'max-new-tokens', 'temperature', 'top-p', 'top-k', 'seed', 'weights', 'kv', 'kv-budget', 'kv-dtype', 'max-context', 'chains', 'memory'],
    switches: ['chat', 'json', 'vote'],
  });
  const model = values.get('model');
  if (!model) throw new UsageError('--model is required');
  const promptIdsArg = values.get('prompt-ids');
  const messagesFile = values.get('messages');
  if ([values.get('prompt'), promptIdsArg, messagesFile].filter((v) => v !== undefined).length !== 1) {
    throw new UsageError('give exactly one of --prompt, --prompt-ids and --messages');
  }
  const promptIds = promptIdsArg === undefined ? undefined : parsePromptIds(promptIdsArg);
  if (switches.has('chat') && values.get('prompt') === undefined) throw new UsageError('--chat needs --prompt (--messages is always a chat)');
  // The conversation to render with the chat template: --messages, or --prompt --chat as one user turn.
  const conversation = messagesFile !== undefined ? await readMessages(messagesFile) : switches.has('chat') ? [{ role: 'user' as const, content: values.get('prompt')! }] : null;
  const prompt = values.get('prompt');
  let maxTokens = intArg(values, 'max-new-tokens', 1, 64)!;
  let kvBudget = intArg(values, 'kv-budget', 1);
  let kv = choiceArg(values, 'kv', POLICIES);
  checkBudget(kv, kvBudget);
  const kvDtype = choiceArg(values, 'kv-dtype', KV_DTYPES);
  let chains = intArg(values, 'chains', 1);
  const memory = values.get('memory');
  if (switches.has('vote') && chains === undefined && memory === undefined) throw new UsageError('--vote needs --chains W (or --memory)');
  const source = modelSource(model, netOptions(values));
  let maxContext = intArg(values, 'max-context', 16);
  let planned: Plan | undefined;
  if (memory !== undefined) {
    // The planner picks W, the length and the policy that fit the KV memory budget (docs/hyperscaling.md).
    if (values.has('chains') || values.has('kv') || values.has('kv-budget') || values.has('max-new-tokens')) {
      throw new UsageError('--memory chooses --chains, --kv, --kv-budget and --max-new-tokens itself; give either --memory or those');
    }
    const level = /^(low|medium|high)$/.test(memory) ? (memory as MemoryLevel) : Number(memory) * MB;
    if (typeof level === 'number' && !(level > 0)) throw new UsageError(`--memory must be low, medium, high or a number of MB, got "${memory}"`);
    const { config } = await readModelConfig(source);
    // The prompt's length sizes the caches: tokenize it the way the engine will (below).
    let promptGuess = promptIds?.length ?? 0;
    if (promptIds === undefined) {
      if (!(await source.exists('tokenizer.json'))) throw new Error(`${model} has no tokenizer.json: use --prompt-ids`);
      const tok = await ModelTokenizer.load(source);
      const text = conversation ? tok.applyChatTemplate(conversation, { addGenerationPrompt: true }) : prompt!;
      promptGuess = tok.encode(text, !conversation).length;
    }
    planned = plan(
      { numLayers: config.numLayers, numKvHeads: config.numKvHeads, headDim: config.headDim, maxContext: Math.min(maxContext ?? config.maxPositionEmbeddings, config.maxPositionEmbeddings), dms: config.dms, kvDtype },
      { budget: typeof level === 'number' ? level : budgetBytes(level), promptTokens: promptGuess, minLength: Math.min(128, config.maxPositionEmbeddings - promptGuess) },
    );
    chains = planned.chains;
    maxTokens = planned.maxTokens;
    kv = planned.policy;
    kvBudget = planned.policy === 'dms' ? planned.slots : undefined;
    maxContext = promptGuess + planned.maxTokens;
    process.stderr.write(`[plan: ${planned.reason}]\n`);
  }
  const W = chains ?? 1;
  const gpu = await nodeGpu();
  const engine = await Engine.load(gpu, source, {
    weights: choiceArg(values, 'weights', WEIGHTS),
    kv,
    kvBudget,
    kvDtype,
    maxContext,
    sequences: W,
    prefillChunk: Math.max(64, W),
  });
  if (!switches.has('json')) process.stderr.write(`[${loadLine(engine)}]\n`);
  const warnings = [budgetIgnored(kvBudget, engine)].filter((w): w is string => w !== null);
  for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
  let ids: number[];
  let dropped: ContextDropped | null = null;
  if (promptIds !== undefined) {
    ids = promptIds;
  } else {
    const tok = engine.tokenizer;
    if (!tok) throw new Error(`${model} has no tokenizer.json: use --prompt-ids`);
    if (conversation) {
      // As the chat page does: room for the reply (at most half the context), the oldest turns dropped to fit.
      const ctx = engine.info.maxContext;
      ({ ids, dropped } = fitConversation(tok, conversation, ctx - Math.min(maxTokens, Math.floor(ctx / 2))));
      maxTokens = Math.max(1, Math.min(maxTokens, ctx - ids.length));
      if (dropped) process.stderr.write(`[${droppedNotice(dropped)}]\n`);
    } else {
      ids = tok.encode(prompt!, true);
    }
  }
  if (planned && ids.length + maxTokens > engine.info.maxContext) maxTokens = Math.max(1, engine.info.maxContext - ids.length);
  const decoder = engine.tokenizer?.createStreamDecoder();
  const json = switches.has('json');
  if (chains !== undefined) {
    await chainsOutput(engine, ids, W, maxTokens, values, json, switches.has('vote'), planned, model, gpu.caps.adapter);
    engine.destroy();
    return;
  }
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
      warnings,
      ...(conversation ? { dropped } : {}),
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

/** `--messages file.json`: a conversation, a JSON list of { role: system | user | assistant, content }. */
async function readMessages(file: string): Promise<ChatMessage[]> {
  let list: unknown;
  try {
    list = JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    throw new UsageError(`--messages ${file}: ${(e as Error).message}`);
  }
  const ok = Array.isArray(list) && list.length > 0 && list.every((m) => ['system', 'user', 'assistant'].includes(m?.role) && typeof m?.content === 'string');
  if (!ok) throw new UsageError(`--messages ${file}: expected a non-empty JSON list of { "role": "system" | "user" | "assistant", "content": "..." }`);
  return list as ChatMessage[];
}

/** What the load cost: a cold start converts a checkpoint on the GPU, a warm one reads a converted model. */
export function loadLine(engine: Engine): string {
  const l = engine.loadStats;
  if (!l) return 'loaded';
  const secs = (l.ms / 1000).toFixed(1);
  const read = formatBytes(l.bytesRead);
  const w = engine.info.weights;
  if (l.fromConverted) return `warm start ${secs} s: ${read} of converted ${w} weights read`;
  const quantized = w === 'q4' || w === 'q8';
  return `cold start ${secs} s: ${read} of checkpoint read, ${quantized ? `quantized to ${w} on the GPU` : `uploaded as ${w}`} (${formatBytes(engine.info.weightBytes)})` +
    (quantized ? `; dms convert --weights ${w} writes a model that starts warm` : '');
}

/** `generate --chains W [--vote]`: W chains from one prompt, batched; JSON gains `chains` and `vote`. */
async function chainsOutput(
  engine: Engine, ids: number[], W: number, maxTokens: number, values: Map<string, string>, json: boolean, doVote: boolean,
  planned: Plan | undefined, model: string, adapter: string,
): Promise<void> {
  const tok = engine.tokenizer;
  const r = await generateChains(engine, ids, {
    chains: W,
    maxTokens,
    temperature: numArg(values, 'temperature', 0, 100),
    topP: numArg(values, 'top-p', 0, 1),
    topK: intArg(values, 'top-k', 0),
    seed: intArg(values, 'seed', 0),
  });
  const chains = r.chains.map((c) => {
    const text = tok ? tok.decode(c.ids) : '';
    return { generated: c.ids, text, finishReason: c.finishReason, answer: tok ? extractAnswer(text) : null, meanLogProb: c.meanLogProb };
  });
  const v = doVote ? vote(chains) : null;
  const pick = chains[v ? v.chain : 0];
  if (json) {
    const out = {
      model,
      promptTokens: ids.length,
      generated: pick.generated,
      text: pick.text,
      finishReason: pick.finishReason,
      chains,
      ...(v ? { vote: { rule: v.rule, answer: v.answer, counts: v.counts, chain: v.chain } } : {}),
      ...(planned ? { plan: { policy: planned.policy, chains: planned.chains, maxTokens: planned.maxTokens, slots: planned.slots, bytes: planned.bytes, budgetBytes: planned.budgetBytes, reason: planned.reason } } : {}),
      kv: r.kv,
      timing: r.timing,
      weights: engine.info.weights,
      adapter,
    };
    process.stdout.write(JSON.stringify(out) + '\n');
    return;
  }
  chains.forEach((c, i) => {
    process.stdout.write(`--- chain ${i} (${c.generated.length} tokens, ${c.finishReason}, mean log-prob ${c.meanLogProb.toFixed(3)}, answer ${c.answer ?? '-'})\n`);
    process.stdout.write((tok ? c.text : c.generated.join(',')) + '\n');
  });
  if (v) process.stdout.write(`--- vote (${v.rule}): ${v.answer ?? `no stated answer; chain ${v.chain} scored highest`} ${JSON.stringify(v.counts)}\n`);
  const k = r.kv;
  process.stderr.write(
    `[${W} chains, ${r.steps} batched steps; prefill ${r.timing.prefillMs.toFixed(0)} ms, decode ${r.timing.decodeTokensPerSecond.toFixed(1)} tok/s (all chains); ` +
      `kv ${k.policy}: peak ${k.peakTokens} tokens vs ${k.peakTokensFull} full (${k.compression.toFixed(2)}x); ${adapter}]\n`,
  );
}
