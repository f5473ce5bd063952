/**
 * A long generation under --kv dms runs in a cache sized for the compressed length: thousands of
 * tokens on the tiny DMS checkpoint, with the cache allocated for a quarter of the context.
 */
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadEngine } from './helpers';

// The fixture's config allows 512 positions; a copy allows 4096 (same weights).
const DIR = mkdtempSync(join(tmpdir(), 'long-dms-'));
cpSync(new URL('../fixtures/golden/qwen3-dms/', import.meta.url).pathname, DIR, { recursive: true });
const config = JSON.parse(readFileSync(join(DIR, 'config.json'), 'utf8'));
writeFileSync(join(DIR, 'config.json'), JSON.stringify({ ...config, max_position_embeddings: 4096 }));

describe('long DMS generation', () => {
  it('generates 2000 tokens in a cache a quarter of the full size, within its budget', async () => {
    const maxContext = 2100, budget = 5 + 525; // window w=4 → w+1, plus a quarter of the context
    const dms = await loadEngine(DIR, { weights: 'f32', kv: 'dms', kvBudget: budget, maxContext });
    const r = await dms.generate([396, 84, 82, 259], { maxTokens: 2000, temperature: 1, seed: 5, stopIds: [] });
    expect(r.finishReason).toBe('length');
    expect(r.ids).toHaveLength(2000);
    const layersHeads = 2 * 2;
    // Every (layer, KV head) stream stays within its slots; the fallback, if it fired, is reported.
    expect(r.kv.peakTokens).toBeLessThanOrEqual(budget * layersHeads);
    expect(r.kv.peakTokensFull).toBe((4 + 2000 - 1) * layersHeads);
    expect(r.kv.compression).toBeGreaterThan(3);
    expect(r.kv.budgetEvictions).toBeGreaterThanOrEqual(0);
    const full = await loadEngine(DIR, { weights: 'f32', kv: 'full', maxContext });
    const fullStats = await full.kvStats();
    // Allocated GPU memory follows the compressed size, not the context.
    // (Fixed scratch buffers are counted too, so a quarter of the slots is a bit over a third of the bytes.)
    expect(r.kv.allocatedBytes).toBeLessThan(fullStats.allocatedBytes / 2.5);
    dms.destroy();
    full.destroy();
  });
});
