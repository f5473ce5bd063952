import source from '../../shaders/rmsnorm.wgsl';
import { params, type Encoder } from '../gpu/encoder';
import { include, specialize } from '../gpu/wgsl';

/** Tests set `allowSubgroups = false` to exercise the workgroup-memory reduction on adapters with subgroups. */
export const rmsNormTuning = { allowSubgroups: true };

/**
 * RMSNorm (HF Llama/Qwen, f32): y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight.
 * x, y f32[rows][cols] (distinct buffers), weight f32[cols]. One workgroup per row.
 */
export function rmsNorm(enc: Encoder, x: GPUBuffer, weight: GPUBuffer, y: GPUBuffer, rows: number, cols: number, eps: number): void {
  if (x === y) throw new Error('rmsNorm: x and y must be distinct buffers');
  if (rows <= 0) return;
  const subgroups = enc.gpu.caps.subgroups && rmsNormTuning.allowSubgroups;
  const code = specialize(include(source), { SUBGROUPS: subgroups });
  const pipeline = enc.gpu.pipeline(subgroups ? 'rmsnorm sg' : 'rmsnorm', code);
  enc.dispatch(pipeline, params(rows, cols, { f32: eps }), [x, weight, y], enc.grid(rows));
}
