/** Shared by the streaming-load and converted tests: a small config, the CPU-packed load, buffer comparison. */
import { expect } from 'vitest';
import { assembleWeights, weightPlan, type ModelWeights } from '../../worker/load/weights';
import type { Gpu } from '../../worker/gpu/context';
import { uploadMatrix } from '../../worker/load/pack';
import { listTensors, readTensorF32 } from '../../worker/load/safetensors';
import { FolderSource } from '../../worker/load/source-node';
import type { GpuMatrix, ModelConfig, WeightFormat } from '../../worker/model/types';

export const SMALL_QWEN3 = {
  architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', hidden_size: 64, intermediate_size: 96, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16, vocab_size: 3001, max_position_embeddings: 256,
  rope_theta: 10000, rms_norm_eps: 1e-6, tie_word_embeddings: false, eos_token_id: 2,
};
/** Parts of 8 KiB: 3001 rows of 64 are split into 12..47 parts whatever the format. */
export const PART = 8192;
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

