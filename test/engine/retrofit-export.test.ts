/**
 * A model exported by the PyTorch trainer (retrofit/) loads in the engine with the logits PyTorch
 * computes, with eviction off (--kv full) and on (--kv dms). scripts/test.sh runs the trainer's smoke
 * test first with RETROFIT_EXPORT_DIR set, so CI always checks a fresh export.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadEngine, maxAbsDiff } from './helpers';

const DIR = process.env.RETROFIT_EXPORT_DIR;

describe.skipIf(!DIR)('retrofit export', () => {
  it('the trainer wrote its export', () => {
    expect(existsSync(join(DIR!, 'reference_logits.json'))).toBe(true);
  });

  for (const [kv, key] of [['full', 'logits_no_eviction'], ['dms', 'logits_dms']] as const) {
    it(`--kv ${kv} reproduces PyTorch's ${key}`, async () => {
      const ref = JSON.parse(readFileSync(join(DIR!, 'reference_logits.json'), 'utf8'));
      const engine = await loadEngine(DIR!, { weights: 'f32', kv });
      const got = await engine.logits(ref.input_ids);
      expect(maxAbsDiff(got, Float32Array.from((ref[key] as number[][]).flat()))).toBeLessThan(1e-3);
      engine.destroy();
    });
  }
});
