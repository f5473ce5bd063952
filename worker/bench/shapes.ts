/** Model shapes for benchmarks with random weights (Qwen3 configurations as published, plus a tiny one). */
import type { ModelConfig } from '../model/types';

const qwen3 = (hiddenSize: number, numLayers: number, numHeads: number, intermediateSize: number, tie: boolean): ModelConfig => ({
  architecture: 'qwen3',
  hiddenSize,
  intermediateSize,
  numLayers,
  numHeads,
  numKvHeads: 8,
  headDim: 128,
  vocabSize: 151936,
  rmsNormEps: 1e-6,
  ropeTheta: 1e6,
  ropeScaling: null,
  maxPositionEmbeddings: 40960,
  tieWordEmbeddings: tie,
  attentionBias: false,
  qkNorm: true,
  bosTokenId: null,
  eosTokenIds: [151645],
  dms: null,
});

export const SHAPES: Record<string, ModelConfig> = {
  tiny: { ...qwen3(256, 4, 8, 768, true), numKvHeads: 2, headDim: 32, vocabSize: 8192 },
  'qwen3-0.6b': qwen3(1024, 28, 16, 3072, true),
  'qwen3-1.7b': qwen3(2048, 28, 16, 6144, true),
  'qwen3-4b': qwen3(2560, 36, 32, 9728, true),
  'qwen3-8b': qwen3(4096, 36, 32, 12288, false),
};

/** The shape with a DMS configuration (the released 8x model's window), under NVIDIA's or FastDMS's decision rule. */
export function withDms(c: ModelConfig, windowSize: number, cr: number, rule: 'nvidia' | 'fastdms' = 'nvidia'): ModelConfig {
  return { ...c, dms: { windowSize, alphaScale: 100, alphaOffset: 5, cr, separateAlpha: false, ...(rule === 'fastdms' ? { convention: rule } : {}) } };
}
