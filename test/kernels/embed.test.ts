import { describe, expect, it } from 'vitest';
import { Encoder } from '../../worker/gpu/encoder';
import { embed } from '../../worker/kernels/embed';
import { packRows, uploadMatrix, matrixBytes } from '../../worker/load/pack';
import type { WeightFormat } from '../../worker/model/types';
import { embedRef } from '../../worker/reference/embed';
import { dequantizeRows } from '../../worker/reference/quant';
import { randn, testGpu } from '../gpu';

describe('embed', () => {
  for (const format of ['f32', 'f16', 'q8', 'q4'] as WeightFormat[]) {
    for (const cols of [64, 37, 300]) {
      if ((format === 'q8' || format === 'q4') && cols === 37) continue;
      it(`${format}, cols=${cols}: gathers rows from every part of a split table`, async () => {
        const gpu = await testGpu();
        const rows = 1000;
        const table = randn(rows * cols, cols, 2);
        // Each part holds about a third of the table.
        const m = uploadMatrix(gpu, 'embed', table, rows, cols, format, Math.ceil(matrixBytes(rows, cols, format) / 3.5));
        expect(m.parts.length).toBeGreaterThanOrEqual(3);
        const ids = new Uint32Array([0, 999, 500, m.parts[1].rowStart, m.parts[1].rowStart - 1, m.parts[m.parts.length - 1].rowStart, 17, 17, 333, 666, 998, 1]);
        const tokens = ids.length;
        const bids = gpu.upload('ids', ids);
        const out = gpu.buffer('out', tokens * cols * 4);
        gpu.write(out, new Float32Array(tokens * cols).fill(NaN));
        const enc = new Encoder(gpu);
        embed(enc, m, bids, out, tokens);
        enc.submit();
        const got = await gpu.readF32(out, tokens * cols);
        const want = embedRef(dequantizeRows(packRows(table, rows, cols, format), rows, cols, format), cols, ids);
        expect(Array.from(got)).toEqual(Array.from(want)); // a gather: bit-exact
        for (const p of m.parts) { gpu.destroy(p.data); if (p.scales) gpu.destroy(p.scales); }
        gpu.destroy(bids); gpu.destroy(out);
      });
    }
  }

  it('a q4 table with odd cols (padded groups)', async () => {
    const gpu = await testGpu();
    const rows = 50, cols = 45;
    const table = randn(rows * cols, 9);
    const m = uploadMatrix(gpu, 'embed', table, rows, cols, 'q4', 20 * 32);
    const ids = new Uint32Array([49, 0, 20, 21, 39, 40]);
    const bids = gpu.upload('ids', ids);
    const out = gpu.buffer('out', ids.length * cols * 4);
    const enc = new Encoder(gpu);
    embed(enc, m, bids, out, ids.length);
    enc.submit();
    const want = embedRef(dequantizeRows(packRows(table, rows, cols, 'q4'), rows, cols, 'q4'), cols, ids);
    expect(Array.from(await gpu.readF32(out, ids.length * cols))).toEqual(Array.from(want));
  });
});
