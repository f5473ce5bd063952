/**
 * The decode attention kernel (shaders/attention_decode.wgsl) against the CPU reference, in the shapes the
 * devices give it: key groups of 2 to 8 lanes (subgroups of 4 on SwiftShader, 8 on lavapipe, 16 lanes of 32
 * on NVIDIA: `dms check` covers that one on the GPU machine), 1 to 4 keys per group step, head dims 32 and
 * 128, group sizes 1 to 8, the full and the DMS cache with evictions, K/V in every storage type.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { decodeLanes, decodeTuning } from '../../worker/kernels/attention';
import type { DmsConfig } from '../../worker/model/types';
import { testGpu } from '../gpu';
import { DTYPES, makeDriver, prefillDecode } from './harness';

const dms: DmsConfig = { windowSize: 8, alphaScale: 100, alphaOffset: 5, cr: null, separateAlpha: false };
afterEach(() => Object.assign(decodeTuning, { enabled: true, keysPerStep: 2, lanes: 0 }));

describe.each(DTYPES)('decode attention kernel, K/V in %s', (dtype) => {
  it('is the kernel decode steps use where subgroups allow, and falls back when disabled', async () => {
    const gpu = await testGpu();
    expect(decodeLanes(gpu, 128, 4)).toBe(Math.min(16, gpu.caps.subgroupMinSize));
    expect(decodeLanes(gpu, 128, 17)).toBe(0); // more than 16 query heads per KV head
    // Workgroup memory at WebGPU's default limit: 16 query heads of d 256 need 16 KB for the outputs alone.
    const small = { caps: { ...gpu.caps, maxComputeWorkgroupStorageSize: 16384 } };
    expect(decodeLanes(small, 256, 16)).toBe(0);
    expect(decodeLanes(small, 256, 8)).toBe(decodeLanes(gpu, 256, 8));
    expect(decodeLanes(small, 128, 16)).toBe(Math.min(16, gpu.caps.subgroupMinSize));
    decodeTuning.enabled = false;
    expect(decodeLanes(gpu, 128, 4)).toBe(0);
  });

  // (lanes, keys per step, head shape): each compiles its own pipeline, which on the CPU adapter takes up
  // to minutes for the largest unrolled ones (4 chunks per lane at d 128), so the table keeps them small.
  const cases: Array<[number, number, [number, number, number]]> = [
    [2, 1, [8, 1, 32]], [4, 2, [8, 2, 32]], [8, 4, [4, 4, 64]], [0, 2, [8, 2, 128]],
  ];
  for (const [lanes, kb, [hq, hkv, d]] of cases) {
    for (const policy of ['full', 'dms'] as const) {
      it(`${lanes || 'automatic'} lanes per key, ${kb} keys per step, Hq ${hq} Hkv ${hkv} d ${d}, ${policy}: prefill 300, decode over several splits`, async () => {
        const gpu = await testGpu();
        Object.assign(decodeTuning, { lanes, keysPerStep: kb });
        expect(decodeLanes(gpu, d, hq / hkv)).toBe(lanes || Math.min(16, d / 8, gpu.caps.subgroupMinSize));
        const dr = makeDriver(gpu, {
          shape: { numLayers: 1, numHeads: hq, numKvHeads: hkv, headDim: d, dms: policy === 'dms' ? dms : null },
          cache: { policy, maxTokens: 340, maxStepTokens: 128, dtype },
          seed: lanes * 100 + kb * 10 + d,
          qkScale: 2,
          evictRate: 0.5,
          dense: policy === 'dms',
        });
        await prefillDecode(dr, 300, 128, 8);
        const labels = [...gpu.pipelines.keys()].map((k) => k.split('\u0000')[0]);
        expect(labels).toContain(`attention_decode G${hq / hkv} D${d} LG${decodeLanes(gpu, d, hq / hkv)} KB${kb} ${dtype}`);
        dr.cache.destroy();
      });
    }
  }
});
