/** Pre-flight sizing from config.json: exact weight bytes, KV bytes, format choice, refusals with numbers, presets. */
import { describe, expect, it } from 'vitest';
import { SHAPES, withDms } from '../../worker/bench/shapes';
import { kvRowBytes } from '../../worker/model/dtype';
import { Engine } from '../../worker/engine/engine';
import { allocMatrix, modelWeightBytes } from '../../worker/load/weights';
import { parseConfig } from '../../worker/model/config';
import { preflightSource } from '../../worker/load/converted';
import { activationBytes, kvBytes, preflight, PreflightError, weightEstimate } from '../../worker/load/preflight';
import { findPreset, modelPresets, presetFit } from '../../worker/model/presets';
import { FolderSource } from '../../worker/load/source-node';
import type { ModelConfig, WeightFormat } from '../../worker/model/types';
import { testGpu } from '../gpu';

const GiB = 2 ** 30;
const BIG = { maxBufferSize: 2 ** 40, maxStorageBufferBindingSize: 2 ** 40, memoryBytes: 2 ** 50 };
const golden = (name: string) => new URL(`../fixtures/golden/${name}/`, import.meta.url).pathname;

describe('pre-flight', () => {
  it('weight bytes equal the GPU buffers the engine allocates (split parts included)', async () => {
    const gpu = await testGpu();
    const c: ModelConfig = { ...SHAPES.tiny, vocabSize: 3001, tieWordEmbeddings: false };
    for (const format of ['f32', 'f16', 'q8', 'q4'] as WeightFormat[]) {
      const maxPart = 64 * 1024;
      const est = weightEstimate(c, format, { maxBufferSize: gpu.caps.maxBufferSize, maxStorageBufferBindingSize: maxPart });
      // Allocate exactly what weights.ts allocates for the matrices, plus the f32 vectors.
      const before = gpu.bytes('pf:');
      const mats = [
        allocMatrix(gpu, 'pf:embed', c.vocabSize, c.hiddenSize, format, maxPart),
        allocMatrix(gpu, 'pf:lm_head', c.vocabSize, c.hiddenSize, format, maxPart),
      ];
      const H = c.hiddenSize, d = c.headDim;
      for (let l = 0; l < c.numLayers; l++) {
        mats.push(allocMatrix(gpu, 'pf:qkv', (c.numHeads + 2 * c.numKvHeads) * d, H, format, maxPart));
        mats.push(allocMatrix(gpu, 'pf:o', H, c.numHeads * d, format, maxPart));
        mats.push(allocMatrix(gpu, 'pf:gu', 2 * c.intermediateSize, H, format, maxPart));
        mats.push(allocMatrix(gpu, 'pf:down', H, c.intermediateSize, format, maxPart));
      }
      const vectors = c.numLayers * (2 * Math.max(16, H * 4) + 2 * Math.max(16, d * 4)) + H * 4;
      expect(est.bytes).toBe(gpu.bytes('pf:') - before + vectors);
      expect(est.parts).toBe(mats.reduce((n, m) => n + m.parts.length, 0));
      expect(est.problem).toBeNull();
      for (const m of mats) for (const p of m.parts) {
        gpu.destroy(p.data);
        if (p.scales) gpu.destroy(p.scales);
      }
      // Unrounded, it agrees with the packed-byte formula of weights.ts within the 16-byte rounding.
      const exact = modelWeightBytes(c, format);
      expect(Math.abs(est.bytes - exact)).toBeLessThan(16 * (est.parts * 2 + c.numLayers * 4 + 1));
    }
  });

  it('KV bytes equal what the slot cache allocates (every policy; f16, f32, q8 and q4 K/V)', async () => {
    const gpu = await testGpu();
    const dir = golden('qwen3-dms');
    for (const [kv, budget] of [['full', undefined], ['dms', undefined], ['dms', 40], ['window', 32], ['tova', 24], ['h2o', 24]] as const) {
      const allocated: Record<string, number> = {};
      const est: Record<string, ReturnType<typeof kvBytes>> = {};
      for (const kvDtype of [undefined, 'f16', 'f32', 'q8', 'q4'] as const) {
        const e = await Engine.load(gpu, new FolderSource(dir), { weights: 'f32', kv, kvBudget: budget, maxContext: 300, kvDtype });
        expect(e.kvDtype).toBe(kvDtype ?? 'f16');
        const stats = await e.kvStats();
        const key = kvDtype ?? 'default';
        est[key] = kvBytes(e.config, kv, 300, { budget, maxStepTokens: 64, dtype: kvDtype });
        allocated[key] = stats.allocatedBytes;
        // One layout (worker/kv/layout.ts) for the allocation and the estimate: equal to the byte.
        expect(est[key].bytes).toBe(stats.allocatedBytes);
        expect(est[key].layerBytes).toBe(e.config.numKvHeads * est[key].capacity * kvRowBytes(e.config.headDim, kvDtype ?? 'f16'));
        e.destroy();
      }
      expect(allocated.default).toBe(allocated.f16);
      expect(est.default).toEqual(est.f16);
      // Only K and V differ between the dtypes: the formula's difference is exactly the allocation's.
      expect(allocated.f32 - allocated.f16).toBe(est.f32.bytes - est.f16.bytes);
      expect(allocated.f32 - allocated.f16).toBe(2 * 2 * (est.f16.layerBytes)); // 2 layers x (K + V) x the f16 bytes saved
    }
  });

  it('quantized K/V: q8 <= 0.55x and q4 <= 0.30x of f16 per resident token; Qwen3-8B at 32K, DMS (w 256, 8x) + q4 <= 1/25 of the f16 full cache; q4 needs head dims in 32s', () => {
    for (const d of [64, 128]) {
      expect(kvRowBytes(d, 'q8') / kvRowBytes(d, 'f16')).toBeLessThanOrEqual(0.55);
      expect(kvRowBytes(d, 'q4') / kvRowBytes(d, 'f16')).toBeLessThanOrEqual(0.3);
    }
    const c = withDms(SHAPES['qwen3-8b'], 256, 8);
    const full = kvBytes(c, 'full', 32768, { dtype: 'f16' }).bytes;
    const dmsQ4 = kvBytes(c, 'dms', 32768, { dtype: 'q4' }).bytes;
    expect(full / dmsQ4).toBeGreaterThanOrEqual(25);
    const lim = { maxBufferSize: 4 * GiB, maxStorageBufferBindingSize: 4 * GiB, memoryBytes: 64 * GiB };
    expect(preflight(c, lim, { maxContext: 32768, kv: 'dms', kvDtype: 'q4' }).kvBytes).toBe(dmsQ4);
    expect(() => preflight({ ...c, headDim: 80 }, lim, { kvDtype: 'q4' })).toThrow(/q4 needs a head dim that is a multiple of 32/);
  });

  it('picks f16, then q8, then q4 as the memory budget shrinks, and says why', () => {
    const small = SHAPES['qwen3-1.7b'];
    const limits = { maxBufferSize: 2 * GiB, maxStorageBufferBindingSize: 2 * GiB };
    expect(preflight(small, { ...limits, memoryBytes: 8 * GiB }, { maxContext: 4096 }).format).toBe('f16');
    expect(preflight(small, { ...limits, memoryBytes: 3 * GiB }, { maxContext: 4096 }).format).toBe('q8');
    const q4 = preflight(small, { ...limits, memoryBytes: 2 * GiB }, { maxContext: 4096 });
    expect(q4.format).toBe('q4');
    expect(q4.formats.q8.problem).toMatch(/over the 2\.00 GiB memory budget/);
    // 8B: f16 (15 GiB of weights) fits 24 GiB, but without an asked format the weights stay under 4 GiB
    // where some format fits (q4 is the smallest, 4.8 GiB); asked for, f16 is given.
    const c = SHAPES['qwen3-8b'];
    expect(preflight(c, { ...limits, memoryBytes: 24 * GiB }, { maxContext: 4096 }).format).toBe('q4');
    expect(preflight(c, { ...limits, memoryBytes: 24 * GiB }, { maxContext: 4096, weights: 'f16' }).format).toBe('f16');
    const r = preflight(c, { ...limits, memoryBytes: 7 * GiB }, { maxContext: 4096 });
    expect(r.format).toBe('q4');
    expect(r.formats.q8.problem).toMatch(/over the 7\.00 GiB memory budget/);
    // The numbers: 8.19B parameters; q4 = 4 bits + a 2-byte scale per 32 → 4.5 bits per weight.
    expect(r.parameters).toBe(8190735360);
    expect(r.formats.q4.weightBytes / r.parameters).toBeGreaterThan(0.5625);
    expect(r.formats.q4.weightBytes / r.parameters).toBeLessThan(0.5635);
    expect(r.formats.f32.weightBytes).toBeGreaterThan(4 * 8.19e9);
    // KV, f16 by default: 36 layers x 8 KV heads x 4096 x 128 x 2 B x 2 (K and V) = 0.5625 GiB, plus the state.
    expect(r.kvDtype).toBe('f16');
    expect(r.kvBytes).toBeGreaterThan(0.5625 * GiB);
    expect(r.kvBytes).toBeLessThan(0.575 * GiB);
    expect(r.kvLayerBytes).toBe(8 * 4096 * 128 * 2);
    // f32: 4 B a value, 1.125 GiB; the state and scratch are the same, so the difference is K and V exactly.
    const r32 = preflight(c, { ...limits, memoryBytes: 7 * GiB }, { maxContext: 4096, kvDtype: 'f32' });
    expect(r32.kvDtype).toBe('f32');
    expect(r32.kvBytes).toBeGreaterThan(1.125 * GiB);
    expect(r32.kvBytes).toBeLessThan(1.14 * GiB);
    expect(r32.kvBytes - r.kvBytes).toBe(36 * 2 * 8 * 4096 * 128 * 2);
    expect(r32.formats.q4.totalBytes - r.formats.q4.totalBytes).toBe(r32.kvBytes - r.kvBytes);
    expect(r.activationBytes).toBe(activationBytes(c, 64));
  });

  it('refuses qwen3-8b at f32 with this adapter\'s limits, with the numbers in the message', async () => {
    const gpu = await testGpu();
    const limits = { maxBufferSize: gpu.caps.maxBufferSize, maxStorageBufferBindingSize: gpu.caps.maxStorageBufferBindingSize };
    let err: unknown;
    try {
      preflight(SHAPES['qwen3-8b'], limits, { weights: 'f32', maxContext: 4096 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PreflightError);
    const e = err as PreflightError;
    expect(e.kind).toBe('preflight');
    expect(e.message).toMatch(/8\.19B parameters/);
    expect(e.message).toMatch(/f32: needs 3\d\.\d\d GiB \(weights 3\d\.\d\d GiB \+ KV 5\d\d\.\d MiB/);
    expect(e.message).toMatch(/KV full f16/);
    expect(e.message).toMatch(/memory budget/);
    expect(e.message).toMatch(/q4 would fit/);
    expect(e.report.formats.f32.totalBytes).toBeGreaterThan(31 * GiB);
  });

  it('refuses when one row cannot fit the binding limit, and when a layer\'s KV cache exceeds it', () => {
    const c = SHAPES['qwen3-8b'];
    expect(() => preflight(c, { maxBufferSize: 2 ** 30, maxStorageBufferBindingSize: 1000 }, {})).toThrow(
      /q4: one row of embed \(4096 q4 values, 2\.0 KiB\) is larger than the 1000 B buffer limit/);
    const lim = { maxBufferSize: 2 ** 30, maxStorageBufferBindingSize: 128 * 2 ** 20, memoryBytes: 64 * GiB };
    expect(() => preflight(c, lim, { maxContext: 40960, kvDtype: 'f32' })).toThrow(
      /one layer's K cache \(8 KV heads x 40960 tokens x 512 B \(head dim 128 in f32\) = 160\.0 MiB\) exceeds maxStorageBufferBindingSize 128\.0 MiB; lower the context/);
    // In f16 (the default) the same layer is 80 MiB and fits.
    const r = preflight(c, lim, { maxContext: 40960 });
    expect(r.kvLayerBytes).toBe(80 * 2 ** 20);
    expect(Object.values(r.formats).every((f) => !f.problem?.includes('K cache'))).toBe(true);
  });

  it('Engine.load refuses before reading any weight (forced small memory budget)', async () => {
    const gpu = await testGpu();
    let weightReads = 0;
    const src = new FolderSource(golden('qwen3'));
    const watched = Object.assign(Object.create(src), {
      read: (f: string, o: number, n: number) => {
        if (o > 8) weightReads++;
        return src.read(f, o, n);
      },
    });
    await expect(Engine.load(gpu, watched, { gpuMemoryBytes: 1024 })).rejects.toThrow(PreflightError);
    await expect(Engine.load(gpu, watched, { gpuMemoryBytes: 1024 })).rejects.toThrow(/over the 1\.0 KiB memory budget/);
    expect(weightReads).toBe(0);
  });
});

describe('preflightSource', () => {
  it('sizes a model from its config.json alone (no weight read) and refuses with the numbers', async () => {
    let reads = 0;
    const src = new FolderSource(golden('qwen3'));
    const watched = Object.assign(Object.create(src), { read: (f: string, o: number, n: number) => (reads++, src.read(f, o, n)) });
    const r = await preflightSource(watched, { maxBufferSize: GiB, maxStorageBufferBindingSize: GiB, memoryBytes: GiB });
    expect(r.format).toBe('f16');
    expect(r.converted).toBe(false);
    await expect(preflightSource(watched, { maxBufferSize: GiB, maxStorageBufferBindingSize: GiB, memoryBytes: 1e6 }, { weights: 'f32' })).rejects.toThrow(
      /f32: needs .* over the 976\.6 KiB memory budget/);
    expect(reads).toBe(0);
  });
});

describe('model presets', () => {
  it('every preset parses and has sizes per format; q4 < q8 < f16 < f32', () => {
    const ps = modelPresets();
    expect(ps.map((p) => p.id)).toEqual([
      'nvidia/Qwen3-8B-DMS-8x', 'shisa-ai/Llama-3.2-1B-DMS-8x', 'Qwen/Qwen3-0.6B', 'Qwen/Qwen3-1.7B', 'Qwen/Qwen3-4B', 'Qwen/Qwen3-8B',
      'Qwen/Qwen2.5-1.5B-Instruct', 'meta-llama/Llama-3.2-1B-Instruct',
    ]);
    for (const p of ps) {
      expect(p.sizes.q4.weightBytes).toBeLessThan(p.sizes.q8.weightBytes);
      expect(p.sizes.q8.weightBytes).toBeLessThan(p.sizes.f16.weightBytes);
      expect(p.sizes.f16.weightBytes).toBeLessThan(p.sizes.f32.weightBytes);
      expect(p.gpuMemory).toBe(p.sizes.q4.gpuBytes);
    }
    // Published parameter counts (from the model cards): 0.6B = 596M with tied embeddings, 8B = 8.19B, Llama 3.2 1B = 1.24B.
    expect(findPreset('Qwen/Qwen3-0.6B')!.parameters).toBe(596049920);
    expect(findPreset('Qwen/Qwen3-8B')!.parameters).toBe(8190735360);
    expect(findPreset('meta-llama/Llama-3.2-1B-Instruct')!.parameters).toBe(1235814400);
    expect(findPreset('nvidia/Qwen3-8B-DMS-8x')!.parameters).toBe(8190735360);
    // shisa-ai's DMS retrofit of Llama 3.2 1B, packaged for FastDMS: the DMS settings come from dms_metadata.json.
    const llamaDms = findPreset('shisa-ai/Llama-3.2-1B-DMS-8x')!;
    expect(llamaDms.parameters).toBe(1235814400);
    expect(llamaDms.parsed.dms).toMatchObject({ windowSize: 256, cr: 8, convention: 'fastdms', channel: 63 });
    expect(llamaDms.kv).toBe('dms');
    // About 0.7 GB at q4, as the issue says; DMS keeps the KV cache of an 8K context small.
    expect(llamaDms.sizes.q4.weightBytes / 2 ** 30).toBeGreaterThan(0.6);
    expect(llamaDms.sizes.q4.weightBytes / 2 ** 30).toBeLessThan(0.8);
    expect(llamaDms.kvBytes).toBeLessThan(findPreset('meta-llama/Llama-3.2-1B-Instruct')!.kvBytes);
    expect(findPreset('Qwen/Qwen2.5-1.5B-Instruct')!.parameters).toBe(1543714304);
    // DMS: the same weights as Qwen3-8B, an eighth of the KV cache (plus the window).
    const dms = findPreset('nvidia/Qwen3-8B-DMS-8x')!, full = findPreset('Qwen/Qwen3-8B')!;
    expect(dms.sizes.q4.weightBytes).toBe(full.sizes.q4.weightBytes);
    expect(dms.kvBytes).toBeLessThan(full.kvBytes / 5);
    expect(parseConfig(dms.config).config.dms?.windowSize).toBe(256);
  });

  it('presetFit gives the format an adapter would get, or the refusal', () => {
    const p = findPreset('Qwen/Qwen3-8B')!;
    const small = presetFit(p, { maxBufferSize: GiB, maxStorageBufferBindingSize: GiB, memoryBytes: 8 * GiB });
    expect(small.ok && small.report.format).toBe('q4');
    const tiny = presetFit(p, { maxBufferSize: GiB, maxStorageBufferBindingSize: GiB, memoryBytes: 2 * GiB });
    expect(!tiny.ok && tiny.error.message).toMatch(/does not fit/);
    expect(presetFit(p, BIG).ok).toBe(true);
  });
});
