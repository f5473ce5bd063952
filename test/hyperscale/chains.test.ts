/**
 * Parallel chains (worker/hyperscale/chains.ts) on the golden qwen3-dms checkpoint: W chains decoded in one
 * batched step each give exactly the tokens of W separate generate() runs with the chains' seeds, under
 * the full and the DMS cache, greedy and sampled; chains stop on their own; the vote and the planner.
 */
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { extractAnswer, normalizeAnswer, vote } from '../../worker/hyperscale/answers';
import { generateChains, tokenLogProb } from '../../worker/hyperscale/chains';
import { budgetBytes, dmsSlots, kvBytes, MB, plan, type PlanModel } from '../../worker/hyperscale/planner';
import { ChatSession } from '../../worker/chat-session';
import type { ChatDelta } from '../../worker/protocol';
import { loadEngine } from '../engine/helpers';

const DIR = new URL('../fixtures/golden/qwen3-dms/', import.meta.url).pathname;
const golden = JSON.parse(readFileSync(`${DIR}golden.json`, 'utf8')) as { prompt_ids: number[]; greedy_ids: number[]; greedy_ids_dms: number[] };
const W = 4;

describe('parallel chains on qwen3-dms', () => {
  for (const kv of ['full', 'dms'] as const) {
    it(`${kv}: greedy chains equal the single greedy run (and transformers' golden ids)`, async () => {
      const engine = await loadEngine(DIR, { weights: 'f32', kv, sequences: W });
      const r = await generateChains(engine, golden.prompt_ids, { chains: W, maxTokens: 16, temperature: 0, stopIds: [] });
      const want = kv === 'full' ? golden.greedy_ids : golden.greedy_ids_dms;
      expect(r.chains).toHaveLength(W);
      for (const c of r.chains) {
        expect(c.ids).toEqual(want);
        expect(c.finishReason).toBe('length');
        expect(c.meanLogProb).toBeLessThan(0);
      }
      expect(r.steps).toBe(15);
      expect(r.kv.tokensSeen).toBe(golden.prompt_ids.length + W * 15);
      if (kv === 'dms') expect(r.kv.peakTokens).toBeLessThan(r.kv.peakTokensFull);
      else expect(r.kv.peakTokens).toBe(r.kv.peakTokensFull);
      engine.destroy();
    });

    it(`${kv}: sampled chains equal W separate runs with the per-chain seeds; stopped chains drop out`, async () => {
      const engine = await loadEngine(DIR, { weights: 'f32', kv, sequences: W });
      const o = { temperature: 1.3, topK: 0, topP: 1, maxTokens: 24 };
      const seen: number[][] = Array.from({ length: W }, () => []);
      const r = await generateChains(engine, golden.prompt_ids, { ...o, chains: W, seed: 11, stopIds: [], onToken: (c, id) => seen[c].push(id) });
      const separate: number[][] = [];
      for (let i = 0; i < W; i++) separate.push((await engine.generate(golden.prompt_ids, { ...o, seed: 11 + i, stopIds: [] })).ids);
      expect(r.chains.map((c) => c.ids)).toEqual(separate);
      expect(seen).toEqual(separate);
      // Sampling at temperature 1.3 makes the chains differ.
      expect(new Set(separate.map((s) => s.join())).size).toBeGreaterThan(1);

      // Stop ids: each chain ends at its own first stop token, exactly where its separate run ends.
      const stopId = separate[1][5];
      const s = await generateChains(engine, golden.prompt_ids, { ...o, chains: W, seed: 11, stopIds: [stopId] });
      for (let i = 0; i < W; i++) {
        const single = await engine.generate(golden.prompt_ids, { ...o, seed: 11 + i, stopIds: [stopId] });
        expect(s.chains[i].ids).toEqual(single.ids);
        expect(s.chains[i].finishReason).toBe(single.finishReason);
      }
      expect(s.chains[1].finishReason).toBe('stop');
      expect(s.chains[1].ids.length).toBeLessThanOrEqual(6);
      // A finished chain is left out of later steps: steps = longest chain - 1.
      expect(s.steps).toBe(Math.max(...s.chains.map((c) => c.ids.length)) - 1);
      expect(s.kv.tokensSeen).toBe(golden.prompt_ids.length + s.chains.reduce((n, c) => n + c.ids.length - 1, 0));
      engine.destroy();
    });
  }

  it('the chain score is the mean log-probability of its tokens under the model', async () => {
    const engine = await loadEngine(DIR, { weights: 'f32', kv: 'full', sequences: 2 });
    const r = await generateChains(engine, golden.prompt_ids, { chains: 2, maxTokens: 6, temperature: 1, seed: 3, stopIds: [] });
    const V = engine.config.vocabSize;
    for (const c of r.chains) {
      const logits = await engine.logits([...golden.prompt_ids, ...c.ids.slice(0, -1)]);
      let sum = 0;
      c.ids.forEach((id, k) => (sum += tokenLogProb(logits, golden.prompt_ids.length - 1 + k, V, id)));
      expect(c.logProb).toBeCloseTo(sum, 3);
      expect(c.meanLogProb).toBeCloseTo(sum / c.ids.length, 4);
    }
    engine.destroy();
  });

  it('refuses more chains than sequences or rows per step', async () => {
    const engine = await loadEngine(DIR, { weights: 'f32', kv: 'full', sequences: 2, prefillChunk: 2 });
    await expect(generateChains(engine, golden.prompt_ids, { chains: 3, maxTokens: 4 })).rejects.toThrow(/rows per step/);
    engine.destroy();
  });
});

const DEFAULT_MODEL = new URL('../../public/models/webdms-default/', import.meta.url).pathname;

describe.skipIf(!existsSync(`${DEFAULT_MODEL}model.safetensors`))('the default model', () => {
  it('answers an addition in two chains with worked steps; the vote reads "The answer is X."', async () => {
    const engine = await loadEngine(DEFAULT_MODEL, { kv: 'dms', sequences: 2, maxContext: 160 });
    const tok = engine.tokenizer!;
    const ids = tok.encode(tok.applyChatTemplate([{ role: 'user', content: 'What is 23 + 45?' }], { addGenerationPrompt: true }), false);
    const r = await generateChains(engine, ids, { chains: 2, maxTokens: 96, temperature: 0 });
    const texts = r.chains.map((c) => tok.decode(c.ids));
    expect(texts[0]).toContain('</think>');
    expect(r.chains.every((c) => c.finishReason === 'stop')).toBe(true);
    const v = vote(r.chains.map((c, i) => ({ answer: extractAnswer(texts[i]), meanLogProb: c.meanLogProb })));
    expect(v).toMatchObject({ rule: 'majority', answer: '68', counts: { '68': 2 } });
    engine.destroy();
  }, 240_000);
});

describe('chat session in chains mode (the worker protocol)', () => {
  it('streams each chain with its index, returns every chain and the vote; the reply is the voted chain', async () => {
    const engine = await loadEngine(DIR, { weights: 'f32', kv: 'dms', sequences: 3 });
    const session = new ChatSession(engine, (ids, o) => generateChains(engine, ids, o), 3);
    const deltas: ChatDelta[] = [];
    const req = { messages: [{ role: 'user' as const, content: 'Hello there' }], chains: 3, maxTokens: 10, temperature: 1.2, seed: 4 };
    const res = await session.chat(req, (d) => deltas.push(d));
    expect(res.chains).toHaveLength(3);
    for (let c = 0; c < 3; c++) {
      expect(deltas.filter((d) => d.chain === c).map((d) => d.content).join('')).toBe(res.chains![c].content);
    }
    expect(res.vote!.rule).toBe('logprob'); // the random fixture states no answers
    expect(res.content).toBe(res.chains![res.vote!.chain].content);
    expect(res.kv.peakTokens).toBeLessThan(res.kv.peakTokensFull);
    // Chain 0 is the plain reply with the same seed.
    const plain = await session.chat({ ...req, chains: undefined }, () => undefined);
    expect(plain.content).toBe(res.chains![0].content);
    await expect(session.chat({ ...req, chains: 4 }, () => undefined)).rejects.toThrow(/loaded for 3/);
    engine.destroy();
  });
});

describe('answers and the vote', () => {
  it('extracts boxed answers, the final answer line, or nothing', () => {
    expect(extractAnswer('<think>\n12 + 5\nresult: 17\n</think>\n\nThe answer is 17.')).toBe('17');
    expect(extractAnswer('so \\boxed{\\frac{1}{2}} and finally \\boxed{42}')).toBe('42');
    expect(extractAnswer('<think>the answer is 3</think> Final answer: 1,234')).toBe('1234');
    expect(extractAnswer('<think>\n12 + 5\nones: 2 + 5')).toBeNull();
    expect(extractAnswer('<think>The answer is 9.</think>\nno conclusion')).toBeNull();
    expect(normalizeAnswer(' $ 7 . ')).toBe('7');
  });

  it('majority vote, ties by summed score; log-prob when no chain answers', () => {
    const v = vote([
      { answer: '5', meanLogProb: -0.5 },
      { answer: '6', meanLogProb: -0.1 },
      { answer: '5', meanLogProb: -0.9 },
      { answer: null, meanLogProb: -0.01 },
    ]);
    expect(v).toEqual({ rule: 'majority', answer: '5', counts: { '5': 2, '6': 1 }, chain: 0 });
    const tie = vote([{ answer: '1', meanLogProb: -2 }, { answer: '2', meanLogProb: -1 }]);
    expect(tie.answer).toBe('2');
    expect(tie.chain).toBe(1);
    const none = vote([{ answer: null, meanLogProb: -3 }, { answer: null, meanLogProb: -0.2 }, { answer: null, meanLogProb: -1 }]);
    expect(none).toEqual({ rule: 'logprob', answer: null, counts: {}, chain: 1 });
  });
});

describe('the planner', () => {
  const model: PlanModel = { numLayers: 8, numKvHeads: 2, headDim: 64, maxContext: 1024, dms: { windowSize: 64, cr: 8 } };

  it('every option fits the budget, and DMS buys more or longer chains than the full cache', () => {
    for (const budget of [1, 2, 4, 8, 16, 64] as const) {
      const p = plan(model, { budget: budget * MB, promptTokens: 40, minLength: 128 });
      for (const o of p.options) {
        expect(o.bytes).toBeLessThanOrEqual(budget * MB);
        expect(o.bytes).toBe(kvBytes(model, o.policy, o.chains, o.slots));
        expect(o.maxTokens).toBeGreaterThanOrEqual(128);
        expect(40 + o.maxTokens).toBeLessThanOrEqual(1024);
      }
      const full = p.options.find((o) => o.policy === 'full');
      const dms = p.options.find((o) => o.policy === 'dms')!;
      if (full) expect(dms.chains * dms.maxTokens).toBeGreaterThanOrEqual(full.chains * full.maxTokens);
      expect(p.policy).toBe('dms');
      // K and V in f16 by default: 8 layers x 2 heads x 64 x 2 x 2 bytes per token.
      expect(p.bytesPerToken).toBe(8 * 2 * 64 * 4);
      expect(plan({ ...model, kvDtype: 'f32' }, { budget: budget * MB, promptTokens: 40, minLength: 128 }).bytesPerToken).toBe(8 * 2 * 64 * 8);
    }
    // The same budget buys about twice the chain tokens with f16 K/V (the state words are the same).
    const f16 = plan(model, { budget: 8 * MB, promptTokens: 40, minLength: 128, policies: ['full'] });
    const f32 = plan({ ...model, kvDtype: 'f32' }, { budget: 8 * MB, promptTokens: 40, minLength: 128, policies: ['full'] });
    expect(f16.chains * (40 + f16.maxTokens)).toBeGreaterThan(1.5 * f32.chains * (40 + f32.maxTokens));
    expect(kvBytes({ ...model, kvDtype: 'f32' }, 'full', 1, 168) - kvBytes(model, 'full', 1, 168)).toBe(8 * 2 * 2 * 168 * 64 * 2);
    // Half a MB cannot hold one full chain of 168 tokens (8 layers x 2 heads x 168 x 64 x 4 bytes = 0.69 MB in f16).
    expect(() => plan({ ...model, dms: null }, { budget: 0.5 * MB, promptTokens: 40, minLength: 128 })).toThrow(/holds no chain/);
    expect(budgetBytes('medium')).toBe(64 * MB);
  });

  it('a measured compression changes the DMS slots; the slots the plan picks are what the cache allocates', async () => {
    expect(dmsSlots(model, 1024, 8)).toBe(65 + Math.ceil(959 / 8));
    const measured = plan(model, { budget: 4 * MB, promptTokens: 40, compression: 5.81, measuredLength: 1024, policies: ['dms'] });
    expect(measured.compressionAssumed).toBeGreaterThan(8);
    const engine = await loadEngine(DIR, { weights: 'f32', kv: 'full', sequences: 3, maxContext: 128 });
    const c = engine.config;
    engine.destroy();
    for (const [policy, kvDtype] of [['full', 'f16'], ['dms', 'f16'], ['full', 'f32'], ['dms', 'f32']] as const) {
      const m: PlanModel = { numLayers: c.numLayers, numKvHeads: c.numKvHeads, headDim: c.headDim, maxContext: 128, dms: c.dms, kvDtype };
      const p = plan(m, { budget: 160 * 1024, promptTokens: 20, widths: [1, 2, 3], lengths: [16, 32, 64, 100], policies: [policy] });
      expect(p.bytes).toBeLessThanOrEqual(160 * 1024);
      expect(p.chains * p.maxTokens).toBeGreaterThanOrEqual(64);
      // The per-chain bytes are what the cache allocates: W sequences cost W - 1 more chains than one
      // (the small shared buffers, dest, partials and counters, do not depend on W).
      const opts = { weights: 'f32' as const, kv: policy, kvDtype, maxContext: 20 + p.maxTokens, kvBudget: policy === 'dms' ? p.slots : undefined };
      const [eW, e1] = [await loadEngine(DIR, { ...opts, sequences: p.chains }), await loadEngine(DIR, { ...opts, sequences: 1 })];
      const diff = (await eW.kvStats()).allocatedBytes - (await e1.kvStats()).allocatedBytes;
      expect(diff).toBe(p.bytes - kvBytes(m, policy, 1, p.slots));
      eW.destroy();
      e1.destroy();
    }
  });
});
