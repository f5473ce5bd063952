import source from '../../shaders/embed.wgsl';
import { params, type Encoder } from '../gpu/encoder';
import type { GpuMatrix, WeightFormat } from '../model/types';
import { include, specialize } from '../gpu/wgsl';

const compiled = new WeakMap<object, Map<WeightFormat, GPUComputePipeline>>();

function pipeline(enc: Encoder, format: WeightFormat): GPUComputePipeline {
  let cache = compiled.get(enc.gpu);
  if (!cache) compiled.set(enc.gpu, (cache = new Map()));
  let p = cache.get(format);
  if (!p) {
    const code = specialize(include(source), { F32: format === 'f32', F16: format === 'f16', Q8: format === 'q8', Q4: format === 'q4', QUANT: format === 'q8' || format === 'q4' });
    p = enc.gpu.pipeline(`embed_${format}`, code);
    cache.set(format, p);
  }
  return p;
}

/**
 * out[t] = table[ids[t]] dequantized to f32: ids u32[tokens], out f32[tokens][table.cols].
 * One dispatch per part; a part writes only the tokens whose id falls in its row range
 * (ids outside the table are not written).
 */
export function embed(enc: Encoder, table: GpuMatrix, ids: GPUBuffer, out: GPUBuffer, tokens: number): void {
  if (tokens <= 0 || table.cols <= 0) return;
  const pipe = pipeline(enc, table.format);
  const chunks = Math.ceil(table.cols / 256);
  const count = tokens * chunks;
  const quant = table.format === 'q8' || table.format === 'q4';
  for (const part of table.parts) {
    if (part.rows === 0) continue;
    if (quant && !part.scales) throw new Error(`embed ${table.label}: ${table.format} part without scales`);
    const buffers = quant ? [part.data, part.scales!, ids, out] : [part.data, ids, out];
    enc.dispatch(pipe, params(part.rows, table.cols, part.rowStart, chunks, count), buffers, enc.grid(count));
  }
}
