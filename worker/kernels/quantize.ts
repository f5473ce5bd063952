import source from '../../shaders/quantize.wgsl';
import { params, type Encoder } from '../gpu/encoder';
import { rowScaleWords, rowWords } from '../load/pack';
import type { TensorDtype } from '../load/safetensors';
import type { WeightFormat } from '../model/types';
import { specialize } from '../gpu/wgsl';

const compiled = new WeakMap<object, Map<string, GPUComputePipeline>>();

function pipeline(enc: Encoder, dtype: TensorDtype, format: WeightFormat): GPUComputePipeline {
  let cache = compiled.get(enc.gpu);
  if (!cache) compiled.set(enc.gpu, (cache = new Map()));
  const key = `${dtype}_${format}`;
  let p = cache.get(key);
  if (!p) {
    const code = specialize(source, {
      SRC_F32: dtype === 'F32', SRC_F16: dtype === 'F16', SRC_BF16: dtype === 'BF16',
      OUT_F32: format === 'f32', OUT_F16: format === 'f16', OUT_Q8: format === 'q8', QUANT: format === 'q8' || format === 'q4',
    });
    p = enc.gpu.pipeline(`quantize_${key}`, code);
    cache.set(key, p);
  }
  return p;
}

/**
 * Packs `rows` rows of `cols` elements into `format`, exactly as packRows (worker/load/pack.ts) packs
 * their f32 values: element (r, c) is element `srcBase + r * cols + c` of `src` (raw `dtype` values:
 * f32 words, or two f16/bf16 halves per u32, low half first); the packed row r is written as row
 * `dstRow + r` of `data` (and of `scales` for q8/q4), the buffers of one MatrixPart.
 */
export function quantizeRows(
  enc: Encoder,
  src: GPUBuffer,
  dtype: TensorDtype,
  srcBase: number,
  rows: number,
  cols: number,
  format: WeightFormat,
  data: GPUBuffer,
  scales: GPUBuffer | null,
  dstRow: number,
): void {
  if (rows <= 0 || cols <= 0) return;
  const quant = format === 'q8' || format === 'q4';
  if (quant && !scales) throw new Error(`quantizeRows: ${format} needs a scales buffer`);
  const perThread = format === 'f32' ? cols : format === 'f16' ? rowWords(cols, format) : rowScaleWords(cols, format);
  const count = rows * perThread;
  if (count > 2 ** 32 - 64) throw new Error(`quantizeRows: ${rows} rows of ${cols} is too many for one dispatch`);
  const buffers = quant ? [src, data, scales!] : [src, data];
  enc.dispatch(pipeline(enc, dtype, format), params(rows, cols, srcBase, dstRow, count), buffers, enc.grid(Math.ceil(count / 64)));
}
