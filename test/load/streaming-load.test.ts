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
import type { ModelWeights } from '../../worker/load/weights';
import { parseConfig } from '../../worker/model/config';
import type { ModelSource } from '../../worker/load/source';
import { FolderSource } from '../../worker/load/source-node';
import type { WeightFormat } from '../../worker/model/types';
// @ts-expect-error: a plain .mjs script without type declarations
import { makeRandomCheckpoint } from '../../scripts/make-random-checkpoint.mjs';
import { testGpu } from '../gpu';
import { cpuPackedWeights, expectSameBuffers, PART, SMALL_QWEN3 } from './weights-helpers';

const SMALL_QWEN2 = {
  architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', hidden_size: 64, intermediate_size: 80, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 2500, max_position_embeddings: 256,
  rope_theta: 10000, rms_norm_eps: 1e-6, tie_word_embeddings: true, eos_token_id: 2,
};
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
