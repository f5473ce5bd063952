import { describe, expect, it } from 'vitest';
import { Encoder } from '../../worker/gpu/encoder';
import { add } from '../../worker/kernels/add';
import { addRef } from '../../worker/reference/add';
import { maxRelErr, randn, testGpu } from '../gpu';

describe('add', () => {
  for (const n of [1, 255, 257, 10_000]) {
    it(`matches the CPU reference for n=${n}`, async () => {
      const gpu = await testGpu();
      const x = randn(n, 1), y = randn(n, 2);
      const bx = gpu.upload('x', x), by = gpu.upload('y', y);
      const enc = new Encoder(gpu);
      add(enc, bx, by, n);
      enc.submit();
      expect(maxRelErr(await gpu.readF32(bx, n), addRef(x, y))).toBeLessThanOrEqual(1);
    });
  }
});
