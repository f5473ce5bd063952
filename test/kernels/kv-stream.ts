/**
 * One KV stream of the slot cache (the state, K and V buffers of one (layer, sequence), worker/kv/layout.ts)
 * built by hand, for the KV kernels' own tests (attention, kv-commit, kv-score), and read back: which
 * position each slot holds, its DMS mark and score, and its stored key and value.
 */
import { stateLayout, type StateLayout } from '../../worker/kv/layout';
import { packKvRows, unpackKvRows } from '../../worker/kv/quant';
import { kvRowWords } from '../../worker/model/dtype';
import type { KvDtype, KvPolicyName } from '../../worker/model/types';
import { storeKv } from '../../worker/reference/kv-commit';
import { randn } from '../gpu';
import type { OpBuffers } from './ops';

export interface StreamSpec {
  hkv: number;
  d: number;
  /** Slots per KV head. */
  cap: number;
  policy: KvPolicyName;
  /** DMS window w (0 for the other policies). */
  window: number;
  dtype: KvDtype;
  /** Tokens the stream has seen: seen[h] of every head, the step's first position. */
  pos0: number;
  /** Per KV head, the position each slot holds, in slot order (its length is len[h]). */
  slots: number[][];
  /** Per KV head and slot, the DMS mark (bit 31 of the position word). */
  marked?: boolean[][];
  /** Per KV head and slot, the tova/h2o score. */
  scores?: number[][];
  seed: number;
}

export interface Stream {
  spec: StreamSpec;
  st: StateLayout;
  state: GPUBuffer;
  k: GPUBuffer;
  v: GPUBuffer;
  /** K and V of every slot as stored ([hkv][cap][d], f16 values decoded exactly). */
  keys: Float32Array;
  values: Float32Array;
}

/** K or V rows of d values in the cache's storage (worker/kv/quant.ts: all the rows' data, then their scales). */
export function packKv(x: Float32Array, d: number, dtype: KvDtype): Uint32Array {
  return packKvRows(x, d, dtype).words;
}

function unpackKv(words: Uint32Array, d: number, dtype: KvDtype): Float32Array {
  const w = kvRowWords(d, dtype);
  const rows = Math.floor(words.length / (w.data + w.scale));
  return unpackKvRows(words.subarray(0, rows * w.data), words.subarray(rows * w.data, rows * (w.data + w.scale)), rows, d, dtype);
}

/** Uploads the stream as the written buffers of `t` (sentinel tails). Ring entries (DMS) point at the resident tokens of the last w+1 positions. */
export function buildStream(t: OpBuffers, spec: StreamSpec): Stream {
  const { hkv, d, cap, window: w, pos0 } = spec;
  const st = stateLayout(hkv, cap, spec.policy, w);
  const words = new Uint32Array(st.words);
  const junk = randn(st.words, spec.seed + 7, 1e3);
  for (let i = 0; i < words.length; i++) words[i] = Math.abs(Math.floor(junk[i])) % Math.max(1, cap); // unused words: slot-like junk
  const f = new Float32Array(words.buffer);
  for (let h = 0; h < hkv; h++) {
    const slots = spec.slots[h];
    words[h] = slots.length;
    words[st.seenOff + h] = pos0;
    slots.forEach((p, s) => {
      words[st.posOff + h * cap + s] = (p | (spec.marked?.[h][s] ? 0x80000000 : 0)) >>> 0;
      if (spec.policy === 'dms' && p >= pos0 - w - 1) words[st.ringOff + h * (w + 1) + (p % (w + 1))] = s;
      if (spec.scores) f[st.scoreOff + h * cap + s] = spec.scores[h][s];
    });
  }
  const keys = storeKv(randn(hkv * cap * d, spec.seed, 1), spec.dtype, d);
  const values = storeKv(randn(hkv * cap * d, spec.seed + 1, 1), spec.dtype, d);
  const k = packKv(keys, d, spec.dtype), v = packKv(values, d, spec.dtype);
  return { spec, st, state: t.output(words.length, words), k: t.output(k.length, k), v: t.output(v.length, v), keys, values };
}

export interface SlotRead {
  slot: number;
  pos: number;
  marked: boolean;
  score: number;
  k: Float32Array;
  v: Float32Array;
}

/** Reads the stream back: len, seen, each head's resident tokens by position, and the state words. */
export async function readStream(t: OpBuffers, s: Stream): Promise<{ len: number[]; seen: number[]; heads: Map<number, SlotRead>[]; words: Uint32Array }> {
  const { hkv, d, cap, dtype } = s.spec;
  const words = await t.words(s.state, 'state');
  const f = new Float32Array(words.buffer);
  const keys = unpackKv(await t.words(s.k, 'K'), d, dtype), values = unpackKv(await t.words(s.v, 'V'), d, dtype);
  const len: number[] = [], seen: number[] = [], heads: Map<number, SlotRead>[] = [];
  for (let h = 0; h < hkv; h++) {
    len.push(words[h]);
    seen.push(words[s.st.seenOff + h]);
    const m = new Map<number, SlotRead>();
    for (let slot = 0; slot < words[h]; slot++) {
      const w = words[s.st.posOff + h * cap + slot];
      const o = (h * cap + slot) * d;
      m.set(w & 0x7fffffff, { slot, pos: w & 0x7fffffff, marked: w >>> 31 === 1, score: f[s.st.scoreOff + h * cap + slot], k: keys.slice(o, o + d), v: values.slice(o, o + d) });
    }
    heads.push(m);
  }
  return { len, seen, heads, words };
}

/** `n` distinct positions below `below`, in random order, always including `must`. */
export function somePositions(n: number, below: number, seed: number, must: number[] = []): number[] {
  const r = randn(below, seed);
  const order = Array.from({ length: below }, (_, i) => i).sort((a, b) => r[a] - r[b]);
  const picked = [...must, ...order.filter((p) => !must.includes(p))].slice(0, n);
  const s = randn(n, seed + 1);
  return picked.map((p, i) => [p, s[i]] as const).sort((a, b) => a[1] - b[1]).map(([p]) => p);
}
