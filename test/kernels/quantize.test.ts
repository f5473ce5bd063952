/** shaders/quantize.wgsl against packRows (the CPU reference), bit for bit, from f32 / f16 / bf16 rows. */
import { describe, expect, it } from 'vitest';
import { Encoder } from '../../worker/gpu/encoder';
import { quantizeRows } from '../../worker/kernels/quantize';
import { packRows, rowScaleWords, rowWords } from '../../worker/load/pack';
import { toF32, type TensorDtype } from '../../worker/load/safetensors';
import type { WeightFormat } from '../../worker/model/types';
import { testGpu } from '../gpu';

/** Raw rows of `dtype` with hard cases: zeros, -0, subnormals, tiny groups (f16-subnormal or zero scales), large values (saturated scales), infinities. */
function rawRows(dtype: TensorDtype, n: number, seed: number): Uint8Array {
  let s = seed >>> 0 || 1;
  const rnd = () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s;
  };
  const f32 = new Float32Array(n);
  const u32 = new Uint32Array(f32.buffer);
  for (let i = 0; i < n; i++) {
    const kind = Math.floor(i / 32) % 9; // a whole group of one kind, so scales hit every regime
    const r = rnd();
    switch (kind) {
      case 0: f32[i] = ((r / 2 ** 32) * 2 - 1) * 0.05; break; // typical weights
      case 1: f32[i] = 0; break; // all-zero group
      case 2: u32[i] = (r & 0x807fffff) >>> 0; break; // f32 subnormals
      case 3: f32[i] = ((r / 2 ** 32) * 2 - 1) * 2 ** -120; break; // scale near the subnormal boundary
      case 4: f32[i] = ((r / 2 ** 32) * 2 - 1) * 70000; break; // beyond f16's range
      case 5: f32[i] = r % 5 === 0 ? -0 : (r % 7) - 3; break; // integers: exact ties after scaling
      case 6: u32[i] = ((r % 3 === 0 ? 0 : r & 0x80000000) | (((r >>> 8) % 254 + 1) << 23) | (r & 0x7fffff)) >>> 0; break; // any finite
      case 7: f32[i] = ((r / 2 ** 32) * 2 - 1) * 1e-5; break; // tiny weights: f16-subnormal scales
      default: f32[i] = r % 97 === 0 ? (r & 1 ? Infinity : -Infinity) : ((r / 2 ** 32) - 0.5) * 3; // an infinity now and then
    }
  }
  if (dtype === 'F32') return new Uint8Array(f32.buffer);
  const h = new Uint16Array(n);
  for (let i = 0; i < n; i++) {
    if (dtype === 'BF16') h[i] = u32[i] >>> 16;
    else {
      const r = rnd() & 0xffff;
      h[i] = (r & 0x7c00) === 0x7c00 ? r & 0x83ff : r; // random f16 patterns, no NaN/inf
    }
  }
  return new Uint8Array(h.buffer);
}

describe('quantize.wgsl', () => {
  const cases: [number, number][] = [[7, 37], [5, 64], [3, 3], [9, 96], [4, 1]];
  for (const dtype of ['F32', 'BF16', 'F16'] as TensorDtype[]) {
    for (const format of ['f32', 'f16', 'q8', 'q4'] as WeightFormat[]) {
      it(`${dtype} -> ${format} equals packRows bit for bit`, async () => {
        const gpu = await testGpu();
        for (const [rows, cols] of cases) {
          // Two leading rows in the staging buffer and two rows of offset in the destination: only the
          // middle range is converted, as the streaming loader does across part boundaries.
          const lead = 2, dstRow = 3;
          const raw = rawRows(dtype, (rows + lead) * cols, rows * 131 + cols);
          const all = toF32(dtype, raw);
          const want = packRows(all.slice(lead * cols), rows, cols, format);
          const src = gpu.upload('test:q src', raw);
          const words = rowWords(cols, format), sc = rowScaleWords(cols, format);
          const data = gpu.buffer('test:q data', (dstRow + rows) * words * 4);
          const scales = sc ? gpu.buffer('test:q scales', (dstRow + rows) * sc * 4) : null;
          const enc = new Encoder(gpu, 'quantize test');
          quantizeRows(enc, src, dtype, lead * cols, rows, cols, format, data, scales, dstRow);
          enc.submit();
          const got = await gpu.readU32(data, rows * words, dstRow * words);
          const wantU32 = new Uint32Array(want.data.buffer, want.data.byteOffset, rows * words);
          const bad = got.findIndex((v, i) => v !== wantU32[i]);
          expect(bad, `${rows}x${cols} data word ${bad}: ${got[bad]?.toString(16)} vs ${wantU32[bad]?.toString(16)}`).toBe(-1);
          if (scales) {
            const gs = await gpu.readU32(scales, rows * sc, dstRow * sc);
            const ws = new Uint32Array(want.scales!.buffer, want.scales!.byteOffset, rows * sc);
            const bs = gs.findIndex((v, i) => v !== ws[i]);
            expect(bs, `${rows}x${cols} scale ${bs}: ${gs[bs]?.toString(16)} vs ${ws[bs]?.toString(16)}`).toBe(-1);
            gpu.destroy(scales);
          }
          gpu.destroy(src);
          gpu.destroy(data);
        }
      });
    }
  }
});
