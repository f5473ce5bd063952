/** Parity of config, safetensors and tokenizer with transformers on the golden fixtures (test/fixtures/README.md). */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../worker/model/config';
import { listTensors, readTensorF32 } from '../../worker/load/safetensors';
import { FolderSource } from '../../worker/load/source-node';
import { ModelTokenizer } from '../../worker/model/tokenizer';

const root = new URL('../fixtures/golden/', import.meta.url).pathname;
const json = (p: string) => JSON.parse(readFileSync(root + p, 'utf8'));

interface Case { text: string; ids: number[]; decoded: string; decoded_skip_special: string }
interface Chat { messages: { role: string; content: string }[]; add_generation_prompt: boolean; kwargs: Record<string, unknown>; text: string; ids: number[] }

/** transformers apply_chat_template arguments → ours (the fixtures use only enable_thinking). */
function chatOpts(ex: Chat) {
  const extra = Object.keys(ex.kwargs).filter((k) => k !== 'enable_thinking');
  if (extra.length) throw new Error(`unmapped chat template kwargs: ${extra.join(', ')}`);
  return { addGenerationPrompt: ex.add_generation_prompt, enableThinking: ex.kwargs.enable_thinking as boolean | undefined };
}

const expected = {
  qwen3: { architecture: 'qwen3', numLayers: 3, numKvHeads: 2, headDim: 32, tieWordEmbeddings: true, attentionBias: false, qkNorm: true, ropeTheta: 1e6, ropeScaling: null, eosTokenIds: [397, 395], dms: null, dtype: 'BF16' },
  qwen2: { architecture: 'qwen2', numLayers: 2, numKvHeads: 1, headDim: 16, tieWordEmbeddings: false, attentionBias: true, qkNorm: false, ropeTheta: 1e4, eosTokenIds: [397], dms: null, dtype: 'F16' },
  llama: {
    architecture: 'llama', numLayers: 2, numKvHeads: 2, headDim: 16, tieWordEmbeddings: false, attentionBias: false, qkNorm: false, ropeTheta: 5e5,
    ropeScaling: { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 16 }, maxPositionEmbeddings: 128, dtype: 'F32',
  },
  'qwen3-dms': {
    architecture: 'qwen3', numLayers: 2, headDim: 32, tieWordEmbeddings: false, qkNorm: true, eosTokenIds: [397, 395],
    dms: { windowSize: 4, alphaScale: 100, alphaOffset: 5, cr: 4, separateAlpha: false }, dtype: 'BF16',
  },
} as const;

for (const [name, want] of Object.entries(expected)) {
  describe(`golden ${name}`, () => {
    const src = new FolderSource(root + name);

    it('parses config.json + generation_config.json', () => {
      const { config } = parseConfig(json(`${name}/config.json`), json(`${name}/generation_config.json`));
      const { dtype: _d, ...fields } = want;
      expect(config).toMatchObject({ ...fields, hiddenSize: 64, intermediateSize: 128, numHeads: 4, vocabSize: 400, bosTokenId: 395 });
    });

    it('lists and reads every tensor', async () => {
      const tensors = await listTensors(src);
      const { config } = parseConfig(json(`${name}/config.json`));
      expect(tensors.has('lm_head.weight')).toBe(!config.tieWordEmbeddings);
      const embed = tensors.get('model.embed_tokens.weight')!;
      expect(embed).toMatchObject({ dtype: want.dtype, shape: [400, 64] });
      for (const t of tensors.values()) {
        const v = await readTensorF32(src, t);
        expect(v.length).toBe(t.shape.reduce((a, b) => a * b, 1));
        expect(v.every(Number.isFinite), t.name).toBe(true);
        // Norm weights are 1 + 0.1·N(0,1): a wrong dtype conversion would not land near 1.
        if (t.name.endsWith('norm.weight')) expect(Math.abs(v.reduce((a, b) => a + b, 0) / v.length - 1), t.name).toBeLessThan(0.1);
      }
    });

    it('renders the prompt and encodes it as transformers does', async () => {
      const g = json(`${name}/golden.json`);
      const tok = await ModelTokenizer.load(src);
      const text = tok.applyChatTemplate(g.prompt_messages, { addGenerationPrompt: true });
      expect(text).toBe(g.prompt_text);
      expect(tok.encode(text, false)).toEqual(g.prompt_ids);
      const ex: Chat = g.chat_template_example;
      expect(tok.applyChatTemplate(ex.messages, chatOpts(ex))).toBe(ex.text);
    });
  });
}

describe('golden tokenizer cases', async () => {
  const c = json('tokenizer_cases.json');
  const tok = await ModelTokenizer.load(new FolderSource(root + 'qwen3'));

  it('has the expected added tokens and eos', () => {
    for (const [t, id] of Object.entries(c.added_token_ids as Record<string, number>)) expect(tok.tokenToId(t)).toBe(id);
    expect(tok.eosTokenIds).toEqual([397]);
    expect(tok.specialTokens.pad).toBe('<|endoftext|>');
    expect(tok.vocabSize).toBe(c.vocab_size);
  });

  for (const k of c.cases as Case[]) {
    it(`encodes, decodes and streams ${JSON.stringify(k.text).slice(0, 40)}`, () => {
      expect(tok.encode(k.text)).toEqual(k.ids);
      expect(tok.decode(k.ids, false)).toBe(k.decoded);
      expect(tok.decode(k.ids, true)).toBe(k.decoded_skip_special);
      const dec = tok.createStreamDecoder(true);
      const parts = [...k.ids.map((i) => dec.push(i)), dec.flush()];
      for (const p of parts) expect(p).not.toContain('\uFFFD');
      expect(parts.join('')).toBe(k.decoded_skip_special);
    });
  }

  for (const [i, ex] of (c.chat_examples as Chat[]).entries()) {
    it(`chat example ${i} matches transformers.apply_chat_template`, () => {
      expect(tok.applyChatTemplate(ex.messages, chatOpts(ex))).toBe(ex.text);
      expect(tok.encode(ex.text, false)).toEqual(ex.ids);
    });
  }
});
