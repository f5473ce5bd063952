/**
 * A model exported by the PyTorch trainer (retrofit/) loads in the engine with the logits PyTorch
 * computes, with eviction off (--kv full) and on (--kv dms). scripts/test.sh runs the trainer's smoke
 * test first with RETROFIT_EXPORT_DIR set, so CI always checks a fresh export.
 * The parity check pins the KV cache to f32; the default f16 K/V moved these logits (|logit| <= ~0.75)
 * by 4.9e-5 when measured, so it is held to the same 1e-3 and to PyTorch's argmax at every position.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { argmaxRow, loadEngine, maxAbsDiff } from './helpers';

const DIR = process.env.RETROFIT_EXPORT_DIR;

describe.skipIf(!DIR)('retrofit export', () => {
  it('the trainer wrote its export', () => {
    expect(existsSync(join(DIR!, 'reference_logits.json'))).toBe(true);
  });

  for (const [kv, key] of [['full', 'logits_no_eviction'], ['dms', 'logits_dms']] as const) {
    for (const kvDtype of ['f32', 'f16'] as const) {
      it(`--kv ${kv} reproduces PyTorch's ${key} (K/V ${kvDtype})`, async () => {
        const ref = JSON.parse(readFileSync(join(DIR!, 'reference_logits.json'), 'utf8'));
        const engine = await loadEngine(DIR!, { weights: 'f32', kv, kvDtype });
        const got = await engine.logits(ref.input_ids);
        const want = Float32Array.from((ref[key] as number[][]).flat());
        expect(maxAbsDiff(got, want)).toBeLessThan(1e-3);
        const V = want.length / ref.input_ids.length;
        for (let t = 0; t < ref.input_ids.length; t++) expect(argmaxRow(got, t, V)).toBe(argmaxRow(want, t, V));
        engine.destroy();
      });
    }
  }
});
