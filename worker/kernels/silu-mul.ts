import source from '../../shaders/silu_mul.wgsl';
import { params, type Encoder } from '../gpu/encoder';

/** out = silu(gate) * up: gateUp f32[rows][2F] (gate then up in each row), out f32[rows][F]. */
export function siluMul(enc: Encoder, gateUp: GPUBuffer, out: GPUBuffer, rows: number, F: number): void {
  if (gateUp === out) throw new Error('siluMul: gateUp and out must be distinct buffers');
  const n = rows * F;
  if (n <= 0) return;
  enc.dispatch(enc.gpu.pipeline('silu_mul', source), params(rows, F), [gateUp, out], enc.grid(Math.ceil(n / 256)));
}
