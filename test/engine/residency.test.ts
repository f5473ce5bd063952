/** The residency map the app draws: per (layer, KV head), which positions the cache still holds. */
import { describe, expect, it } from 'vitest';
import { loadEngine } from './helpers';

const DIR = new URL('../fixtures/golden/qwen3-dms/', import.meta.url).pathname;

describe('kvResidency', () => {
  for (const kv of ['dms', 'full'] as const) {
    it(`agrees with the cache's counters under --kv ${kv}`, async () => {
      const engine = await loadEngine(DIR, { weights: 'f32', kv });
      const r = await engine.generate([396, 84, 82, 259, 198, 84, 82], { maxTokens: 40, temperature: 0.8, seed: 2, stopIds: [] });
      const map = await engine.kvResidency();
      expect(map.tokens).toBe(engine.cachedTokens.length);
      expect(map.layers * map.kvHeads).toBe(4);
      const on = map.bits.reduce((a, b) => a + b, 0);
      expect(on).toBe(r.kv.residentTokens);
      const w = map.window ?? -1;
      for (let row = 0; row < 4; row++) {
        // The newest w+1 positions are always resident (the DMS window); with full, everything is.
        const from = kv === 'dms' ? map.tokens - w - 1 : 0;
        for (let p = from; p < map.tokens; p++) expect(map.bits[row * map.tokens + p]).toBe(1);
      }
      if (kv === 'dms') expect(on).toBeLessThan(map.tokens * 4);
      engine.destroy();
    });
  }
});
