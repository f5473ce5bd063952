/** Loading checkpoints for engine tests: tensors as f32 for the CPU reference, and a GPU engine. */
import { Engine, type EngineOptions } from '../../worker/engine/engine';
import { parseConfig } from '../../worker/model/config';
import { listTensors, readTensorF32 } from '../../worker/load/safetensors';
import { FolderSource } from '../../worker/load/source-node';
import type { ModelConfig } from '../../worker/model/types';
import { packRows } from '../../worker/load/pack';
import type { WeightFormat } from '../../worker/model/types';
import type { Tensors } from '../../worker/reference/model';
import { dequantizeRows } from '../../worker/reference/quant';
import { testGpu } from '../gpu';

export async function loadReference(dir: string): Promise<{ config: ModelConfig; tensors: Tensors }> {
  const src = new FolderSource(dir);
  const gen = (await src.exists('generation_config.json')) ? JSON.parse(await src.text('generation_config.json')) : undefined;
  const { config } = parseConfig(JSON.parse(await src.text('config.json')), gen);
  const infos = await listTensors(src);
  const data = new Map<string, Float32Array>();
  for (const [name, info] of infos) data.set(name, await readTensorF32(src, info));
  const tensors: Tensors = (name) => {
    const t = data.get(name);
    if (!t) throw new Error(`reference: no tensor ${name}`);
    return t;
  };
  return { config, tensors };
}

export async function loadEngine(dir: string, opts: EngineOptions = {}): Promise<Engine> {
  return Engine.load(await testGpu(), new FolderSource(dir), opts);
}

/** Index of the largest value of row t of a [T][V] array. */
export function argmaxRow(logits: Float32Array, t: number, V: number): number {
  let best = 0;
  for (let i = 1; i < V; i++) if (logits[t * V + i] > logits[t * V + best]) best = i;
  return best;
}

export function maxAbsDiff(a: Float32Array, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/**
 * The tensors the GPU sees in `format`: every 2-D weight packed and unpacked exactly as the engine packs
 * it (rows are quantized independently, so concatenating q/k/v or gate/up rows changes nothing).
 */
export function asStored(config: ModelConfig, tensors: Tensors, format: WeightFormat): Tensors {
  const cache = new Map<string, Float32Array>();
  return (name) => {
    const t = tensors(name);
    const is2d = /(_proj|embed_tokens|lm_head)\.weight$/.test(name) && !name.includes('dms_proj_alpha');
    if (!is2d || format === 'f32') return t;
    let q = cache.get(name);
    if (!q) {
      const cols = name.includes('down_proj') ? config.intermediateSize : name.includes('o_proj') ? config.numHeads * config.headDim : config.hiddenSize;
      const rows = t.length / cols;
      q = dequantizeRows(packRows(t, rows, cols, format), rows, cols, format);
      cache.set(name, q);
    }
    return q;
  };
}
