import source from '../../shaders/add.wgsl';
import { params, type Encoder } from '../gpu/encoder';

/** x += y over n floats. */
export function add(enc: Encoder, x: GPUBuffer, y: GPUBuffer, n: number): void {
  enc.dispatch(enc.gpu.pipeline('add', source), params(n), [x, y], enc.grid(Math.ceil(n / 256)));
}
