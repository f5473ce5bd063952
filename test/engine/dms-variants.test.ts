/**
 * Both DMS variants under --kv full and --kv dms against the CPU reference model with the DMS
 * visibility rule: the borrowed q channel (the released checkpoint's convention) and the adapter
 * variant (dms_separate_alpha: alpha = dms_proj_alpha(rmsnorm(layer input))), built here from the
 * qwen3-dms fixture with added adapter weights.
 */
import { mkdtempSync, readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { dmsVisibility, referenceForward } from '../../worker/reference/model';
import { randn } from '../gpu';
import { writeSafetensors, type TestTensor } from '../load/helpers';
import { loadEngine, loadReference, maxAbsDiff } from './helpers';

const FIXTURE = new URL('../fixtures/golden/qwen3-dms/', import.meta.url).pathname;
const IDS = [396, 84, 82, 259, 198, 84, 82, 11, 305, 149, 96, 98, 180, 26, 381, 9, 345, 149, 153, 381, 26, 12, 200, 7];

/** The fixture plus zero-offset adapter weights whose logits straddle 0, with dms_separate_alpha. */
async function adapterCheckpoint(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'dms-adapter-'));
  const ref = await loadReference(FIXTURE);
  const c = ref.config;
  const cfg = JSON.parse(readFileSync(join(FIXTURE, 'config.json'), 'utf8'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...cfg, dms_separate_alpha: true }));
  for (const f of ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) copyFileSync(join(FIXTURE, f), join(dir, f));
  const names = [
    'model.embed_tokens.weight', 'model.norm.weight', 'lm_head.weight',
    ...Array.from({ length: c.numLayers }, (_, l) =>
      ['input_layernorm', 'post_attention_layernorm', 'self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'self_attn.q_norm', 'self_attn.k_norm', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj']
        .map((n) => `model.layers.${l}.${n}.weight`)).flat(),
  ];
  const shapeOf = (n: string, len: number): number[] => {
    if (n.endsWith('norm.weight')) return [len];
    const cols = n.includes('down_proj') ? c.intermediateSize : n.includes('o_proj') ? c.numHeads * c.headDim : c.hiddenSize;
    return [len / cols, cols];
  };
  const tensors: TestTensor[] = names.map((name) => {
    const data = ref.tensors(name);
    return { name, dtype: 'F32', shape: shapeOf(name, data.length), data };
  });
  for (let l = 0; l < c.numLayers; l++) {
    tensors.push({ name: `model.layers.${l}.self_attn.dms_proj_alpha.weight`, dtype: 'F32', shape: [c.numKvHeads, c.hiddenSize], data: randn(c.numKvHeads * c.hiddenSize, 11 + l, 0.6) });
    tensors.push({ name: `model.layers.${l}.self_attn.dms_proj_alpha_norm.weight`, dtype: 'F32', shape: [c.hiddenSize], data: new Float32Array(c.hiddenSize).fill(1) });
  }
  writeFileSync(join(dir, 'model.safetensors'), writeSafetensors(tensors));
  return dir;
}

describe('DMS variants against the CPU reference', () => {
  for (const [variant, kvDtype] of (['borrowed channel', 'adapter (dms_separate_alpha)'] as const).flatMap((v) => (['f32', 'f16'] as const).map((t) => [v, t] as const))) {
    it(`${variant}, K/V ${kvDtype}: --kv full and --kv dms (prefill chunks of 5, then decode) match the reference`, async () => {
      const dir = variant === 'borrowed channel' ? FIXTURE : await adapterCheckpoint();
      const ref = await loadReference(dir);
      const c = ref.config;
      expect(c.dms?.separateAlpha).toBe(variant !== 'borrowed channel');
      // The reference rounds K and V to f16 as the engine's f16 cache stores them.
      const full = referenceForward(c, ref.tensors, IDS, undefined, { kvDtype });
      const masked = referenceForward(c, ref.tensors, IDS, dmsVisibility(c.dms!.windowSize, c.numKvHeads), { kvDtype });
      // The decisions really mix: some keys are hidden, so the masked logits differ.
      const decisions = masked.alpha!.flatMap((a) => Array.from(a));
      expect(decisions.some((v) => v > 0) && decisions.some((v) => v <= 0)).toBe(true);
      expect(maxAbsDiff(masked.logits, full.logits)).toBeGreaterThan(1e-3);

      const e1 = await loadEngine(dir, { weights: 'f32', kv: 'full', kvDtype });
      expect(maxAbsDiff(await e1.logits(IDS), full.logits)).toBeLessThan(2e-3);
      e1.destroy();
      const e2 = await loadEngine(dir, { weights: 'f32', kv: 'dms', prefillChunk: 8, kvDtype });
      expect(maxAbsDiff(await e2.logits(IDS, 5), masked.logits)).toBeLessThan(2e-3);
      expect(maxAbsDiff(await e2.logits(IDS, 1), masked.logits)).toBeLessThan(2e-3);
      e2.destroy();
    });
  }
});
