/**
 * NaN or Inf in the weights make every logit non-finite; the sampler then answers an id outside the
 * vocabulary. Generation must stop with an error naming the token, in the engine, in parallel chains and in
 * the CLI (non-zero exit), instead of feeding the bogus id back as a token.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { generateChains } from '../../worker/hyperscale/chains';
import { listTensors, readTensorF32 } from '../../worker/load/safetensors';
import { FolderSource } from '../../worker/load/source-node';
import { writeSafetensors } from '../load/helpers';
import { loadEngine } from './helpers';

const ROOT = new URL('../../', import.meta.url).pathname;
const FIXTURE = join(ROOT, 'test/fixtures/golden/qwen3-dms');
const PROMPT = [5, 6, 7];

/** The fixture with `poison` applied to its tensors (as f32), in a new folder. */
async function poisoned(poison: (name: string, t: Float32Array) => void): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'webdms-nan-'));
  for (const f of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(FIXTURE, f), join(dir, f));
  const src = new FolderSource(FIXTURE);
  const tensors = [];
  for (const [name, info] of await listTensors(src)) {
    const t = Float32Array.from(await readTensorF32(src, info));
    poison(name, t);
    tensors.push({ name, dtype: 'F32', shape: info.shape, data: t });
  }
  writeFileSync(join(dir, 'model.safetensors'), writeSafetensors(tensors));
  return dir;
}

/** Every embedding row but the prompt's is NaN: the prompt gives finite logits, the first new token does not. */
const nanAfterPrompt = () =>
  poisoned((name, t) => {
    if (name !== 'model.embed_tokens.weight') return;
    const H = 64;
    for (let id = 0; id < t.length / H; id++) if (!PROMPT.includes(id)) t.fill(NaN, id * H, (id + 1) * H);
  });

describe('non-finite logits', () => {
  it('stop generation at the token they appear, keeping nothing bogus', async () => {
    const dir = await poisoned((name, t) => {
      if (name === 'model.norm.weight') t[0] = Infinity;
    });
    const engine = await loadEngine(dir, { weights: 'f32', kv: 'full' });
    const tokens: number[] = [];
    await expect(engine.generate(PROMPT, { maxTokens: 4, onToken: (id) => tokens.push(id) })).rejects.toThrow(/non-finite logits at token 1\b/);
    expect(tokens).toEqual([]);
    engine.destroy();
  });

  it('after good tokens: those are delivered, then the error names the first bad one (greedy and sampled)', async () => {
    const engine = await loadEngine(await nanAfterPrompt(), { weights: 'f32', kv: 'full' });
    for (const temperature of [0, 0.8]) {
      const tokens: number[] = [];
      const err = await engine.generate(PROMPT, { maxTokens: 8, temperature, seed: 3, onToken: (id) => tokens.push(id) }).catch((e: Error) => e);
      expect(err).toBeInstanceOf(Error);
      const n = Number(/non-finite logits at token (\d+)/.exec((err as Error).message)?.[1]);
      expect(n).toBeGreaterThan(1);
      expect(tokens).toHaveLength(n - 1);
      expect(tokens.every((id) => id < engine.config.vocabSize)).toBe(true);
    }
    engine.destroy();
  });

  it('parallel chains stop the same way', async () => {
    const engine = await loadEngine(await nanAfterPrompt(), { weights: 'f32', kv: 'full', sequences: 2 });
    await expect(generateChains(engine, PROMPT, { chains: 2, maxTokens: 8 })).rejects.toThrow(/non-finite logits at token \d+ of chain \d/);
    engine.destroy();
  });

  it('the CLI exits non-zero with the message', async () => {
    const dir = await nanAfterPrompt();
    const r = await new Promise<{ code: number; stderr: string }>((resolve) =>
      execFile('node', ['scripts/dms.mjs', 'generate', '--model', dir, '--prompt-ids', PROMPT.join(','), '--max-new-tokens', '8', '--weights', 'f32', '--kv', 'full', '--json'], { cwd: ROOT, timeout: 120_000 }, (err, _o, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr })),
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error: the model produced non-finite logits at token \d+/);
  });
});
