/**
 * Random weights of a given shape, generated on the GPU in the target format (an 8B model's weights
 * never pass through JS memory), for benchmarks of speed, not of output quality.
 */
import source from '../../shaders/fill_random.wgsl';
import type { Gpu } from '../gpu/context';
import { Encoder, params } from '../gpu/encoder';
import { matrixParts, rowScaleWords, rowWords } from '../load/pack';
import type { GpuMatrix, ModelConfig, WeightFormat } from '../model/types';
import type { ModelWeights } from '../load/weights';

const MODE = { f32: 0, f16: 1, bits: 2, scales: 3 } as const;

function fill(gpu: Gpu, buf: GPUBuffer, words: number, mode: number, seed: number, scale: number): void {
  const enc = new Encoder(gpu, 'fill random');
  enc.dispatch(gpu.pipeline('fill_random', source), params(words, mode, seed, { f32: scale }), [buf], enc.grid(Math.ceil(words / 256)));
  enc.submit();
}

let seeds = 1;

export function randomMatrix(gpu: Gpu, label: string, rows: number, cols: number, format: WeightFormat): GpuMatrix {
  const std = 1 / Math.sqrt(cols);
  const parts = matrixParts(gpu, label, rows, cols, format).map(({ rowStart, rows: n }, i) => {
    const words = n * (format === 'f32' ? cols : rowWords(cols, format));
    const data = gpu.buffer(`${label} part ${i}`, words * 4);
    fill(gpu, data, words, format === 'f32' ? MODE.f32 : format === 'f16' ? MODE.f16 : MODE.bits, seeds++, std);
    let scales: GPUBuffer | null = null;
    if (format === 'q8' || format === 'q4') {
      const count = n * rowScaleWords(cols, format);
      scales = gpu.buffer(`${label} scales ${i}`, count * 4);
      fill(gpu, scales, count, MODE.scales, seeds++, std / (format === 'q8' ? 127 : 7));
    }
    return { rowStart, rows: n, data, scales };
  });
  return { label, format, rows, cols, parts };
}

export function randomWeights(gpu: Gpu, c: ModelConfig, format: WeightFormat): ModelWeights {
  const H = c.hiddenSize, d = c.headDim, F = c.intermediateSize;
  const ones = (label: string, n: number) => gpu.upload(label, new Float32Array(n).fill(1));
  const before = gpu.bytes('w:');
  const embed = randomMatrix(gpu, 'w:embed', c.vocabSize, H, format);
  const layers = Array.from({ length: c.numLayers }, (_, l) => ({
    inputNorm: ones(`w:${l}.input_norm`, H),
    qkv: randomMatrix(gpu, `w:${l}.qkv`, (c.numHeads + 2 * c.numKvHeads) * d, H, format),
    qkvBias: null,
    qNorm: c.qkNorm ? ones(`w:${l}.q_norm`, d) : null,
    kNorm: c.qkNorm ? ones(`w:${l}.k_norm`, d) : null,
    o: randomMatrix(gpu, `w:${l}.o`, H, c.numHeads * d, format),
    postNorm: ones(`w:${l}.post_norm`, H),
    gateUp: randomMatrix(gpu, `w:${l}.gate_up`, 2 * F, H, format),
    down: randomMatrix(gpu, `w:${l}.down`, H, F, format),
    dmsAlpha: null,
  }));
  const lmHead = c.tieWordEmbeddings ? embed : randomMatrix(gpu, 'w:lm_head', c.vocabSize, H, format);
  return { embed, layers, finalNorm: ones('w:final_norm', H), lmHead, bytes: gpu.bytes('w:') - before };
}
