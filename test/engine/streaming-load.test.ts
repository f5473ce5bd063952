/**
 * Streaming load: a random bf16 checkpoint (scripts/make-random-checkpoint.mjs) whose vocabulary is
 * larger than a forced small part size, so every big matrix is split into parts and read in slices
 * that straddle parts and the q/k/v, gate/up boundaries. The GPU-quantized streaming load must equal the
 * CPU-packed load (packRows + uploadMatrix) buffer for buffer, and give identical logits; reads stay
 * bounded by the slice size.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../worker/engine/engine';
import { assembleWeights, weightPlan, type ModelWeights } from '../../worker/engine/weights';
import type { Gpu } from '../../worker/gpu/context';
import { parseConfig } from '../../worker/model/config';
import { uploadMatrix } from '../../worker/model/pack';
import { listTensors, readTensorF32 } from '../../worker/model/safetensors';
import type { ModelSource } from '../../worker/model/source';
import { FolderSource } from '../../worker/model/source-node';
import type { GpuMatrix, ModelConfig, WeightFormat } from '../../worker/model/types';
// @ts-expect-error: a plain .mjs script without type declarations
import { makeRandomCheckpoint } from '../../scripts/make-random-checkpoint.mjs';
import { testGpu } from '../gpu';

export const SMALL_QWEN3 = {
  architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', hidden_size: 64, intermediate_size: 96, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16, vocab_size: 3001, max_position_embeddings: 256,
  rope_theta: 10000, rms_norm_eps: 1e-6, tie_word_embeddings: false, eos_token_id: 2,
};
const SMALL_QWEN2 = {
  architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', hidden_size: 64, intermediate_size: 80, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 2500, max_position_embeddings: 256,
  rope_theta: 10000, rms_norm_eps: 1e-6, tie_word_embeddings: true, eos_token_id: 2,
};
/** Parts of 8 KiB: 3001 rows of 64 are split into 12..47 parts whatever the format. */
export const PART = 8192;
/** Slices of 3000 bytes: not a multiple of any row or part. */
const SLICE = 3000;
const PROMPT = [1, 17, 400, 2999, 5, 1234, 77, 3000];

/** Records every read, and how many are in flight at once. */
class WatchedSource implements ModelSource {
  reads: { file: string; offset: number; length: number }[] = [];
  inFlight = 0;
  maxInFlight = 0;
  constructor(readonly inner: ModelSource, readonly name = inner.name) {}
  size(f: string) { return this.inner.size(f); }
  text(f: string) { return this.inner.text(f); }
  exists(f: string) { return this.inner.exists(f); }
  async read(file: string, offset: number, length: number) {
    this.reads.push({ file, offset, length });
    if (offset <= 8) return this.inner.read(file, offset, length); // safetensors headers (read per shard at once)
    this.maxInFlight = Math.max(this.maxInFlight, ++this.inFlight);
    try {
      return await this.inner.read(file, offset, length);
    } finally {
      this.inFlight--;
    }
  }
}

/** The pre-streaming load: every tensor as f32 on the CPU, concatenated, packed by packRows. */
export async function cpuPackedWeights(gpu: Gpu, dir: string, c: ModelConfig, format: WeightFormat, maxPartBytes: number): Promise<ModelWeights> {
  const src = new FolderSource(dir);
  const tensors = await listTensors(src);
  const before = gpu.bytes('w:');
  const plan = weightPlan(c, format);
  const read = (n: string) => readTensorF32(src, tensors.get(n)!);
  const cat = async (names: string[]) => {
    const parts = await Promise.all(names.map(read));
    const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) { out.set(p, o); o += p.length; }
    return out;
  };
  const m = new Map<string, GpuMatrix>();
  const v = new Map<string, GPUBuffer>();
  for (const s of plan.vectors) v.set(s.key, gpu.upload(s.label, await cat(s.sources.map((x) => x.tensor))));
  for (const s of plan.matrices) m.set(s.key, uploadMatrix(gpu, s.label, await cat(s.sources.map((x) => x.tensor)), s.rows, s.cols, s.format, maxPartBytes));
  return assembleWeights(gpu, c, m, v, before);
}

export function matricesOf(w: ModelWeights): GpuMatrix[] {
  return [w.embed, w.lmHead, ...w.layers.flatMap((l) => [l.qkv, l.o, l.gateUp, l.down])];
}

/** Every part buffer of two weight sets, compared word for word. */
export async function expectSameBuffers(gpu: Gpu, a: ModelWeights, b: ModelWeights): Promise<number> {
  const ma = matricesOf(a), mb = matricesOf(b);
  let parts = 0;
  for (let i = 0; i < ma.length; i++) {
    expect(ma[i].parts.map((p) => [p.rowStart, p.rows])).toEqual(mb[i].parts.map((p) => [p.rowStart, p.rows]));
    for (let k = 0; k < ma[i].parts.length; k++) {
      const pa = ma[i].parts[k], pb = mb[i].parts[k];
      const da = await gpu.readU32(pa.data), db = await gpu.readU32(pb.data);
      expect(da.length).toBe(db.length);
      const bad = da.findIndex((x, j) => x !== db[j]);
      expect(bad, `${ma[i].label} part ${k} word ${bad}`).toBe(-1);
      if (pa.scales || pb.scales) {
        const sa = await gpu.readU32(pa.scales!), sb = await gpu.readU32(pb.scales!);
        expect(sa.findIndex((x, j) => x !== sb[j]), `${ma[i].label} scales ${k}`).toBe(-1);
      }
      parts++;
    }
  }
  return parts;
}

describe('streaming load (GPU quantization) vs CPU packing', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'webdms-stream-'));
    makeRandomCheckpoint(join(dir, 'qwen3'), SMALL_QWEN3, { seed: 7, shardBytes: 150_000 });
    makeRandomCheckpoint(join(dir, 'qwen2'), SMALL_QWEN2, { seed: 9, dtype: 'F16', single: true, shardBytes: 1e9 });
    makeRandomCheckpoint(join(dir, 'qwen3-f32'), { ...SMALL_QWEN3, num_hidden_layers: 1 }, { seed: 3, dtype: 'F32', shardBytes: 1e9 });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  for (const [name, raw] of [['qwen3', SMALL_QWEN3], ['qwen2', SMALL_QWEN2], ['qwen3-f32', { ...SMALL_QWEN3, num_hidden_layers: 1 }]] as const) {
    for (const format of ['q4', 'q8', 'f16', 'f32'] as WeightFormat[]) {
      if (name !== 'qwen3' && (format === 'q8' || format === 'f32')) continue;
      it(`${name} ${format}: same buffers and identical logits`, async () => {
        const gpu = await testGpu();
        const { config } = parseConfig(raw);
        const watched = new WatchedSource(new FolderSource(join(dir, name)));
        const streamed = await Engine.load(gpu, watched, { weights: format, maxPartBytes: PART, sliceBytes: SLICE, maxContext: 64 });
        const cpu = Engine.assemble(gpu, 'cpu', config, {}, null, await cpuPackedWeights(gpu, join(dir, name), config, format, PART), { weights: format, maxContext: 64 });
        try {
          const parts = await expectSameBuffers(gpu, (streamed as unknown as { weights: ModelWeights }).weights, (cpu as unknown as { weights: ModelWeights }).weights);
          expect(parts).toBeGreaterThan(20); // really split
          const a = await streamed.logits(PROMPT), b = await cpu.logits(PROMPT);
          expect(a.findIndex((x, i) => x !== b[i])).toBe(-1);
          expect(a.some((x) => x !== 0)).toBe(true);
          // Bounded reads: every weight read is at most one slice (small vectors are read whole), two at a time at most.
          const big = watched.reads.filter((r) => r.offset > 8 && r.length > SLICE); // (headers are read at 0 and 8)
          expect(big).toEqual([]);
          expect(watched.maxInFlight).toBeLessThanOrEqual(2);
          expect(streamed.loadStats!.fromConverted).toBe(false);
          expect(streamed.loadStats!.bytesRead).toBeGreaterThanOrEqual(watched.reads.reduce((n, r) => n + r.length, 0));
        } finally {
          streamed.destroy();
          cpu.destroy();
        }
      });
    }
  }

  it('peak JS memory while streaming a 48 MB bf16 tensor stays far below the tensor (process.memoryUsage)', async () => {
    const gpu = await testGpu();
    const big = { ...SMALL_QWEN3, hidden_size: 512, num_attention_heads: 4, head_dim: 128, intermediate_size: 128, num_hidden_layers: 1, vocab_size: 49152, tie_word_embeddings: true };
    makeRandomCheckpoint(join(dir, 'big'), big, { seed: 5, shardBytes: 1e9, single: true });
    const tensorBytes = 49152 * 512 * 2; // bf16 embed: 48 MiB, 96 MiB as f32
    const base = process.memoryUsage();
    let peakAB = 0, peakHeap = 0;
    const sample = () => {
      const m = process.memoryUsage();
      peakAB = Math.max(peakAB, m.arrayBuffers - base.arrayBuffers);
      peakHeap = Math.max(peakHeap, m.heapUsed - base.heapUsed);
    };
    const timer = setInterval(sample, 5);
    const engine = await Engine.load(gpu, new FolderSource(join(dir, 'big')), {
      weights: 'q4', sliceBytes: 1 << 20, maxContext: 32,
      onProgress: sample,
    });
    clearInterval(timer);
    sample();
    engine.destroy();
    console.log(`streaming load: peak arrayBuffers +${(peakAB / 2 ** 20).toFixed(1)} MiB, heap +${(peakHeap / 2 ** 20).toFixed(1)} MiB for a ${(tensorBytes / 2 ** 20).toFixed(0)} MiB bf16 tensor`);
    expect(peakAB).toBeLessThan(tensorBytes / 2);
    expect(peakHeap).toBeLessThan(tensorBytes / 2);
  });
});
