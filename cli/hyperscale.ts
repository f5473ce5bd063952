/**
 * `dms hyperscale`: inference-time hyper-scaling sweep (docs/hyperscaling.md). For every KV policy,
 * max length L and width W, each task is answered by W parallel chains (worker/hyperscale/chains.ts) and a
 * majority vote over their final answers; accuracy is reported against the measured peak KV tokens and
 * KV reads per problem, so that policies can be compared at equal memory or equal reads.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { extractAnswer, normalizeAnswer, vote } from '../worker/hyperscale/answers';
import { generateChains } from '../worker/hyperscale/chains';
import { Engine } from '../worker/engine/engine';
import { createRandom } from '../worker/engine/random';
import { nodeGpu } from '../worker/gpu/node';
import { KV_DTYPES } from '../worker/model/dtype';
import { ModelTokenizer } from '../worker/model/tokenizer';
import type { KvPolicyName } from '../worker/model/types';
import { choiceArg, intArg, numArg, parseArgs, UsageError } from './args';
import { POLICIES, WEIGHTS } from './generate';
import { modelSource, netOptions } from './model-source';

export interface Task {
  task: string;
  /** User text (the chat template is applied) or a whole ChatML prompt (used as is). */
  prompt: string;
  answer: string;
  promptIds?: number[];
}

export const BUILTIN_TASKS = ['add', 'mul', 'vartrack'] as const;

/** A number of `lo..hi` digits (a single digit may be 0). */
function num(rand: () => number, lo: number, hi: number): number {
  const int = (a: number, b: number) => a + Math.floor(rand() * (b - a + 1));
  const nd = int(lo, hi);
  return nd === 1 ? int(0, 9) : int(10 ** (nd - 1), 10 ** nd - 1);
}

/**
 * The default model's task formats (retrofit/synth.py: addition, multiplication with worked steps,
 * variable tracking without filler), drawn from a seeded PRNG; `n` of each kind.
 */
export function builtinTasks(kinds: string[], n: number, seed: number): Task[] {
  const rand = createRandom(seed);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)];
  const out: Task[] = [];
  for (const kind of kinds) {
    for (let i = 0; i < n; i++) {
      if (kind === 'add') {
        const a = num(rand, 2, 7), b = num(rand, 1, 7);
        out.push({ task: kind, prompt: pick(['What is {a} + {b}?', 'Compute {a} + {b}.', 'Add {a} and {b}.', '{a} + {b} = ?']).replace('{a}', `${a}`).replace('{b}', `${b}`), answer: `${a + b}` });
      } else if (kind === 'mul') {
        const a = num(rand, 2, 4);
        let b = num(rand, 1, 2);
        if (b < 2) b = 2 + Math.floor(rand() * 8);
        out.push({ task: kind, prompt: pick(['What is {a} x {b}?', 'Compute {a} * {b}.', 'Multiply {a} by {b}.', '{a} x {b} = ?']).replace('{a}', `${a}`).replace('{b}', `${b}`), answer: `${a * b}` });
      } else if (kind === 'vartrack') {
        const nv = 6 + Math.floor(rand() * 11);
        const letter = pick(['x', 'y', 'z', 'v', 'w', 'a', 'b', 'k', 'm', 'q']);
        const names = Array.from({ length: nv }, (_, k) => `${letter}${k + 1}`);
        const src: (number | null)[] = [];
        const val: number[] = [];
        for (let k = 0; k < nv; k++) {
          if (k === 0 || rand() < 0.35) {
            src.push(null);
            val.push(Math.floor(rand() * 1000));
          } else {
            const j = Math.floor(rand() * k);
            src.push(j);
            val.push(val[j]);
          }
        }
        const copies = names.map((_, k) => k).filter((k) => src[k] !== null);
        const target = copies.length ? pick(copies) : nv - 1;
        const text = names.map((v, k) => `${v} = ${src[k] === null ? val[k] : names[src[k]!]}.`).join(' ');
        out.push({ task: kind, prompt: `Read the text and track the variables.\n${text}\nWhat is the value of ${names[target]}?`, answer: `${val[target]}` });
      } else {
        throw new UsageError(`unknown built-in task "${kind}" (${BUILTIN_TASKS.join(', ')}, or a .jsonl file)`);
      }
    }
  }
  return out;
}

/** JSONL: one object per line with `prompt` (or `prompt_ids`) and `answer`; `task` optional. */
export function parseTasks(text: string): Task[] {
  return text.split('\n').filter((l) => l.trim()).map((line, i) => {
    const o = JSON.parse(line) as { task?: string; prompt?: string; answer?: unknown; prompt_ids?: number[] };
    if ((typeof o.prompt !== 'string' && !Array.isArray(o.prompt_ids)) || o.answer === undefined) throw new Error(`tasks line ${i + 1}: needs "prompt" (or "prompt_ids") and "answer"`);
    return { task: o.task ?? 'task', prompt: o.prompt ?? '', answer: String(o.answer), promptIds: o.prompt_ids };
  });
}

function listArg(values: Map<string, string>, name: string, fallback: string): string[] {
  return (values.get(name) ?? fallback).split(',').map((s) => s.trim()).filter(Boolean);
}

function intList(values: Map<string, string>, name: string, fallback: string): number[] {
  return listArg(values, name, fallback).map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${name}: "${s}" is not a positive integer`);
    return n;
  });
}

export interface SweepPoint {
  policy: KvPolicyName;
  chains: number;
  maxTokens: number;
  problems: number;
  accuracy: number;
  /** Problems where the vote had an answer at all. */
  answered: number;
  /** Mean per problem: peak resident KV tokens (Σ layers, KV heads, sequences) and its f32 bytes; KV token reads. */
  peakTokens: number;
  peakBytes: number;
  tokenReads: number;
  /** Mean generated tokens per chain, and the share of chains that reached a stop id. */
  chainTokens: number;
  stopped: number;
  perTask: Record<string, { n: number; correct: number }>;
  seconds: number;
}

export async function hyperscaleCommand(argv: string[]): Promise<void> {
  const { values, switches } = parseArgs(argv, {
    values: ['model', 'timeout', 'tasks', 'n', 'task-seed', 'widths', 'lengths', 'kv', 'kv-budget', 'kv-dtype', 'temperature', 'top-p', 'top-k', 'seed', 'weights', 'out', 'time-limit'],
    switches: ['json'],
  });
  const model = values.get('model');
  if (!model) throw new UsageError('--model is required');
  const taskSpec = values.get('tasks') ?? 'add,mul,vartrack';
  const widths = intList(values, 'widths', '1,2,4').sort((a, b) => a - b);
  const lengths = intList(values, 'lengths', '128,256').sort((a, b) => a - b);
  const policies = listArg(values, 'kv', 'full,dms').map((p) => {
    if (!(POLICIES as readonly string[]).includes(p)) throw new UsageError(`--kv: "${p}" is not one of ${POLICIES.join(', ')}`);
    return p as KvPolicyName;
  });
  const kvBudget = intArg(values, 'kv-budget', 2);
  for (const p of policies) {
    if ((p === 'window' || p === 'tova' || p === 'h2o') && kvBudget === undefined) throw new UsageError(`--kv ${p} needs --kv-budget N (tokens kept per layer and KV head)`);
  }
  const n = intArg(values, 'n', 1, 8)!;
  const tasks = /\.jsonl$/.test(taskSpec) ? parseTasks(await readFile(taskSpec, 'utf8')).slice(0, values.has('n') ? n : undefined) : builtinTasks(taskSpec.split(','), n, intArg(values, 'task-seed', 0, 1234)!);
  const sampling = {
    temperature: numArg(values, 'temperature', 0, 100),
    topP: numArg(values, 'top-p', 0, 1),
    topK: intArg(values, 'top-k', 0),
    seed: intArg(values, 'seed', 0, 0),
  };
  const json = switches.has('json');
  const log = (s: string) => process.stderr.write(s);

  const gpu = await nodeGpu();
  const source = modelSource(model, netOptions(values));
  const points: SweepPoint[] = [];
  const Wmax = widths[widths.length - 1];
  if (!(await source.exists('tokenizer.json'))) throw new Error(`${model} has no tokenizer.json`);
  const tok = await ModelTokenizer.load(source);
  const promptIds = tasks.map((t) => t.promptIds ?? (t.prompt.includes('<|im_start|>') ? tok.encode(t.prompt, false) : tok.encode(tok.applyChatTemplate([{ role: 'user', content: t.prompt }], { addGenerationPrompt: true }), false)));
  const maxContext = Math.max(...promptIds.map((p) => p.length)) + lengths[lengths.length - 1];
  const engines = new Map<KvPolicyName, Engine>();
  for (const policy of policies) {
    // One engine per policy, sized for the widest and longest run; DMS keeps what its decisions keep (no
    // budget cap unless --kv-budget), so the peak is the policy's own.
    const engine = await Engine.load(gpu, source, {
      weights: choiceArg(values, 'weights', WEIGHTS),
      kv: policy,
      kvBudget: policy === 'full' ? undefined : (kvBudget ?? (policy === 'dms' ? maxContext : undefined)),
      kvDtype: choiceArg(values, 'kv-dtype', KV_DTYPES),
      sequences: Wmax,
      prefillChunk: Math.max(64, Wmax),
      maxContext,
    });
    if (maxContext > engine.info.maxContext) throw new UsageError(`the longest prompt plus --lengths ${lengths[lengths.length - 1]} is ${maxContext} tokens, over the model's context of ${engine.info.maxContext}`);
    engines.set(policy, engine);
  }
  const first = engines.get(policies[0])!;
  const meta = { adapter: gpu.caps.adapter, weights: first.info.weights, numLayers: first.config.numLayers, numKvHeads: first.config.numKvHeads, headDim: first.config.headDim, dms: first.config.dms };
  log(`[${tasks.length} tasks, prompts ${Math.min(...promptIds.map((p) => p.length))}..${maxContext - lengths[lengths.length - 1]} tokens; ${gpu.caps.adapter}]\n`);
  const result = () => ({
    model,
    tasks: /\.jsonl$/.test(taskSpec) ? taskSpec : `builtin:${taskSpec} x ${n} (seed ${intArg(values, 'task-seed', 0, 1234)})`,
    sampling,
    rule: 'majority vote over the chains\' final answers ("The answer is X." / \\boxed{}); chains without an answer abstain; no answer at all counts as wrong',
    ...meta,
    points,
  });
  const out = values.get('out');
  // Cheapest (W x L) first and policies innermost, so that a sweep cut short by --time-limit (seconds;
  // no new point starts after it) still compares the policies.
  const limit = intArg(values, 'time-limit', 1);
  const started = performance.now();
  const grid = lengths.flatMap((L) => widths.map((W) => ({ L, W }))).sort((a, b) => a.L * a.W - b.L * b.W || a.L - b.L);
  for (const { L, W } of grid) {
    if (limit !== undefined && performance.now() - started > limit * 1000) {
      log(`[time limit: ${limit} s reached, stopping before W=${W} L=${L}]\n`);
      break;
    }
    {
      for (const policy of policies) {
        const engine = engines.get(policy)!;
        const t0 = performance.now();
        const pt: SweepPoint = { policy, chains: W, maxTokens: L, problems: tasks.length, accuracy: 0, answered: 0, peakTokens: 0, peakBytes: 0, tokenReads: 0, chainTokens: 0, stopped: 0, perTask: {}, seconds: 0 };
        for (let i = 0; i < tasks.length; i++) {
          const r = await generateChains(engine, promptIds[i], { ...sampling, chains: W, maxTokens: L });
          const chains = r.chains.map((c) => ({ answer: extractAnswer(tok.decode(c.ids)), meanLogProb: c.meanLogProb }));
          const v = vote(chains);
          const ok = v.answer !== null && v.answer === normalizeAnswer(tasks[i].answer);
          const pk = (pt.perTask[tasks[i].task] ??= { n: 0, correct: 0 });
          pk.n++;
          if (ok) pk.correct++;
          pt.accuracy += ok ? 1 : 0;
          pt.answered += v.answer !== null ? 1 : 0;
          pt.peakTokens += r.kv.peakTokens;
          pt.peakBytes += r.kv.peakBytes;
          pt.tokenReads += r.kv.tokenReads;
          pt.chainTokens += r.chains.reduce((s, c) => s + c.ids.length, 0) / W;
          pt.stopped += r.chains.filter((c) => c.finishReason === 'stop').length / W;
        }
        const N = tasks.length;
        pt.accuracy /= N;
        for (const k of ['peakTokens', 'peakBytes', 'tokenReads', 'chainTokens', 'stopped'] as const) pt[k] /= N;
        pt.seconds = (performance.now() - t0) / 1000;
        points.push(pt);
        if (out) await writeFile(out, JSON.stringify(result(), null, 1) + '\n');
        log(`${policy.padEnd(6)} W=${String(W).padEnd(2)} L=${String(L).padEnd(5)} acc ${(100 * pt.accuracy).toFixed(1).padStart(5)}%  peak KV ${Math.round(pt.peakTokens).toString().padStart(7)} tok (${(pt.peakBytes / 2 ** 20).toFixed(2)} MB)  reads ${(pt.tokenReads / 1e6).toFixed(3)}M  chain ${pt.chainTokens.toFixed(0)} tok, ${(100 * pt.stopped).toFixed(0)}% stopped  ${pt.seconds.toFixed(1)} s\n`);
      }
    }
  }
  for (const e of engines.values()) e.destroy();
  if (json) process.stdout.write(JSON.stringify(result()) + '\n');
  else {
    process.stdout.write('policy  W  L      accuracy  peak KV tokens  peak KV MB  KV reads (M)\n');
    for (const p of points) {
      process.stdout.write(`${p.policy.padEnd(7)} ${String(p.chains).padEnd(2)} ${String(p.maxTokens).padEnd(6)} ${(100 * p.accuracy).toFixed(1).padStart(7)}%  ${Math.round(p.peakTokens).toString().padStart(14)}  ${(p.peakBytes / 2 ** 20).toFixed(2).padStart(10)}  ${(p.tokenReads / 1e6).toFixed(3).padStart(12)}\n`);
    }
  }
}
