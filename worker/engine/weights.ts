/**
 * Reads a Hugging Face checkpoint's tensors from a ModelSource and puts them on the GPU in the chosen
 * weight format. q/k/v are concatenated into one matrix and gate/up into another, so a layer needs
 * two projections fewer per token.
 */
import type { Gpu } from '../gpu/context';
import { readTensorF32, type TensorInfo } from '../model/safetensors';
import type { ModelSource } from '../model/source';
import { matrixBytes, uploadMatrix } from '../model/pack';
import type { GpuMatrix, ModelConfig, WeightFormat } from '../model/types';

export interface LayerWeights {
  inputNorm: GPUBuffer;
  qkv: GpuMatrix;
  qkvBias: GPUBuffer | null;
  qNorm: GPUBuffer | null;
  kNorm: GPUBuffer | null;
  o: GpuMatrix;
  postNorm: GPUBuffer;
  gateUp: GpuMatrix;
  down: GpuMatrix;
  /** DMS adapter variant (dms_separate_alpha): alpha = proj(rmsnorm(layer input, norm)). */
  dmsAlpha: { norm: GPUBuffer; proj: GpuMatrix } | null;
}

export interface ModelWeights {
  embed: GpuMatrix;
  layers: LayerWeights[];
  finalNorm: GPUBuffer;
  /** The same object as `embed` when the embeddings are tied. */
  lmHead: GpuMatrix;
  bytes: number;
}

export class WeightError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WeightError';
  }
}

/** GPU bytes of the whole model in `format` (norms and biases stay f32). */
export function modelWeightBytes(c: ModelConfig, format: WeightFormat): number {
  const H = c.hiddenSize, d = c.headDim, F = c.intermediateSize;
  const qkvRows = (c.numHeads + 2 * c.numKvHeads) * d;
  let perLayer =
    matrixBytes(qkvRows, H, format) + matrixBytes(H, c.numHeads * d, format) + matrixBytes(2 * F, H, format) + matrixBytes(H, F, format);
  perLayer += 4 * (2 * H + (c.qkNorm ? 2 * d : 0) + (c.attentionBias ? qkvRows : 0));
  const embed = matrixBytes(c.vocabSize, H, format);
  return c.numLayers * perLayer + embed * (c.tieWordEmbeddings ? 1 : 2) + 4 * H;
}

/** Number of parameters, as the checkpoint counts them. */
export function parameterCount(c: ModelConfig): number {
  const H = c.hiddenSize, d = c.headDim, F = c.intermediateSize;
  const qkvRows = (c.numHeads + 2 * c.numKvHeads) * d;
  const perLayer = qkvRows * H + H * c.numHeads * d + 3 * F * H + 2 * H + (c.qkNorm ? 2 * d : 0) + (c.attentionBias ? qkvRows : 0);
  return c.numLayers * perLayer + c.vocabSize * H * (c.tieWordEmbeddings ? 1 : 2) + H;
}

export async function loadWeights(
  gpu: Gpu,
  source: ModelSource,
  tensors: Map<string, TensorInfo>,
  c: ModelConfig,
  format: WeightFormat,
  onBytes: (bytes: number, file: string) => void,
): Promise<ModelWeights> {
  const get = async (name: string, shape: number[]): Promise<Float32Array> => {
    const info = tensors.get(name);
    if (!info) throw new WeightError(`${source.name}: tensor "${name}" is missing from the checkpoint`);
    if (info.shape.length !== shape.length || info.shape.some((v, i) => v !== shape[i])) {
      throw new WeightError(`${source.name}: tensor "${name}" has shape [${info.shape}], config.json implies [${shape}]`);
    }
    const data = await readTensorF32(source, info);
    onBytes(info.byteLength, info.file);
    return data;
  };
  const vector = async (label: string, name: string, n: number) => gpu.upload(label, await get(name, [n]));
  const H = c.hiddenSize, d = c.headDim, F = c.intermediateSize, Hq = c.numHeads, Hkv = c.numKvHeads;
  const before = gpu.bytes('w:');

  const embedData = await get('model.embed_tokens.weight', [c.vocabSize, H]);
  const embed = uploadMatrix(gpu, 'w:embed', embedData, c.vocabSize, H, format);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}.`;
    const q = await get(`${p}self_attn.q_proj.weight`, [Hq * d, H]);
    const k = await get(`${p}self_attn.k_proj.weight`, [Hkv * d, H]);
    const v = await get(`${p}self_attn.v_proj.weight`, [Hkv * d, H]);
    const qkvRows = (Hq + 2 * Hkv) * d;
    let qkvBias: GPUBuffer | null = null;
    if (c.attentionBias) {
      qkvBias = gpu.upload(`w:${l}.qkv_bias`, concat([
        await get(`${p}self_attn.q_proj.bias`, [Hq * d]),
        await get(`${p}self_attn.k_proj.bias`, [Hkv * d]),
        await get(`${p}self_attn.v_proj.bias`, [Hkv * d]),
      ]));
    }
    const gate = await get(`${p}mlp.gate_proj.weight`, [F, H]);
    const up = await get(`${p}mlp.up_proj.weight`, [F, H]);
    let dmsAlpha: LayerWeights['dmsAlpha'] = null;
    if (c.dms?.separateAlpha) {
      dmsAlpha = {
        norm: await vector(`w:${l}.dms_alpha_norm`, `${p}self_attn.dms_proj_alpha_norm.weight`, H),
        proj: uploadMatrix(gpu, `w:${l}.dms_alpha`, await get(`${p}self_attn.dms_proj_alpha.weight`, [Hkv, H]), Hkv, H, 'f32'),
      };
    }
    layers.push({
      inputNorm: await vector(`w:${l}.input_norm`, `${p}input_layernorm.weight`, H),
      qkv: uploadMatrix(gpu, `w:${l}.qkv`, concat([q, k, v]), qkvRows, H, format),
      qkvBias,
      qNorm: c.qkNorm ? await vector(`w:${l}.q_norm`, `${p}self_attn.q_norm.weight`, d) : null,
      kNorm: c.qkNorm ? await vector(`w:${l}.k_norm`, `${p}self_attn.k_norm.weight`, d) : null,
      o: uploadMatrix(gpu, `w:${l}.o`, await get(`${p}self_attn.o_proj.weight`, [H, Hq * d]), H, Hq * d, format),
      postNorm: await vector(`w:${l}.post_norm`, `${p}post_attention_layernorm.weight`, H),
      gateUp: uploadMatrix(gpu, `w:${l}.gate_up`, concat([gate, up]), 2 * F, H, format),
      down: uploadMatrix(gpu, `w:${l}.down`, await get(`${p}mlp.down_proj.weight`, [H, F]), H, F, format),
      dmsAlpha,
    });
  }
  const finalNorm = await vector('w:final_norm', 'model.norm.weight', H);
  const lmHead = c.tieWordEmbeddings ? embed : uploadMatrix(gpu, 'w:lm_head', await get('lm_head.weight', [c.vocabSize, H]), c.vocabSize, H, format);
  return { embed, layers, finalNorm, lmHead, bytes: gpu.bytes('w:') - before };
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
