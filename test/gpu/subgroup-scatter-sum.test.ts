/**
 * shaders/subgroup_scatter_sum.wgsl (the decode attention's reduce-scatter sums of its scores) against sums
 * on the CPU: every count of values, every span up to the subgroup, the rounds scatterConstants picks and
 * fewer. Values are small integers, so the sums are exact in any order.
 */
import { describe, expect, it } from 'vitest';
import { Encoder } from '../../worker/gpu/encoder';
import { include, scatterConstants, u32Constants } from '../../worker/gpu/wgsl';
import { testGpu } from '../gpu';

const WG = 64;

const KERNEL = `
@group(0) @binding(0) var<storage, read> vin: array<f32>;
@group(0) @binding(1) var<storage, read_write> vout: array<f32>;
@group(0) @binding(2) var<storage, read_write> lanes: array<u32>;
// #include subgroup_scatter_sum.wgsl
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sgi: u32, @builtin(subgroup_size) sgs: u32) {
  var v: array<f32, SN>;
  for (var e = 0u; e < SN; e++) { v[e] = vin[lid * SN + e]; }
  let t = scatterSum(v, sgi, min(SPAN, sgs));
  for (var k = 0u; k < SK; k++) { vout[lid * SK + k] = t[k]; }
  lanes[2u * lid] = sgi;
  lanes[2u * lid + 1u] = sgs;
}
`;

describe('scatterConstants', () => {
  it('pads the count to a power of two and takes as many rounds as the values and the span allow', () => {
    expect(scatterConstants(8, 32)).toEqual({ SN: 8, SR: 3 });
    expect(scatterConstants(9, 32)).toEqual({ SN: 16, SR: 4 });
    expect(scatterConstants(9, 8)).toEqual({ SN: 16, SR: 3 });
    expect(scatterConstants(14, 16)).toEqual({ SN: 16, SR: 4 });
    expect(scatterConstants(1, 32)).toEqual({ SN: 1, SR: 0 });
    expect(scatterConstants(8, 0)).toEqual({ SN: 8, SR: 0 });
  });
});

describe('subgroup_scatter_sum.wgsl', () => {
  it('lane i ends with the sums of values SK * (i % 2^SR) .. + SK - 1 over the lanes of its span', async () => {
    const gpu = await testGpu();
    if (!gpu.caps.subgroups) return; // the kernels that include it only run with subgroups
    const min = gpu.caps.subgroupMinSize;
    let checked = 0;
    for (const values of [1, 2, 3, 8, 9, 16]) {
      for (let span = 1; span <= Math.max(min, 1); span *= 2) {
        const best = scatterConstants(values, span);
        for (let sr = 0; sr <= best.SR; sr++) {
          const sn = best.SN;
          const sk = sn >> sr;
          const input = Float32Array.from({ length: WG * sn }, (_, i) => ((i * 37) % 23) - 11);
          const code = 'enable subgroups;\n' + u32Constants({ SN: sn, SR: sr, SPAN: span }) + include(KERNEL);
          const pipe = gpu.pipeline(`scatter sum test SN${sn} SR${sr} span${span}`, code);
          const bin = gpu.upload('scatter test in', input);
          const bout = gpu.buffer('scatter test out', WG * sk * 4);
          const blanes = gpu.buffer('scatter test lanes', WG * 8);
          const enc = new Encoder(gpu);
          enc.dispatch(pipe, null, [bin, bout, blanes], [1]);
          enc.submit();
          const got = await gpu.readF32(bout);
          const lanes = await gpu.readU32(blanes);
          for (const b of [bin, bout, blanes]) gpu.destroy(b);
          for (let lid = 0; lid < WG; lid++) {
            const sgi = lanes[2 * lid];
            const width = Math.min(span, lanes[2 * lid + 1]);
            const first = lid - sgi + (sgi & ~(width - 1));
            const own = sgi % 2 ** sr;
            for (let k = 0; k < sk; k++) {
              let want = 0;
              for (let j = first; j < first + width; j++) want += input[j * sn + sk * own + k];
              expect(got[lid * sk + k], `values ${values} (SN ${sn}) SR ${sr} span ${span}: lane ${lid} sum ${sk * own + k}`).toBe(want);
            }
          }
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(10);
  });
});
