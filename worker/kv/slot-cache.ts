/**
 * The slot KV cache (docs/kv-cache.md; the layout itself is worker/kv/layout.ts). For every (layer,
 * sequence) there are three GPU buffers:
 *   K, V   [Hkv][cap][d] of f16 (two halves per u32, the default), f32, q8 or q4 (options.dtype), then
 *          for q8/q4 the scales of every (head, slot) (worker/kv/quant.ts)
 *          cap = slots per (layer, seq, KV head), sized from the policy's budget
 *   state  u32: len[Hkv] | seen[Hkv] | pos[Hkv][cap] (bit 31 = DMS mark) | ring[Hkv][w+1] (DMS) | score[Hkv][cap] (tova/h2o)
 * Slots [0, len) of a stream are resident, in no particular order (RoPE is applied before caching).
 * seen[h] is the position of the stream's next token, kept on the GPU so a recorded step's dispatches
 * hold no position and can be replayed (worker/gpu/encoder.ts, StepPlan).
 * Counters (resident, peak, reads, evictions) live on the GPU and are read only by stats().
 */
import type { Gpu } from '../gpu/context';
import { Encoder, type Binding } from '../gpu/encoder';
import { attention, attentionDecode, decodeLanes, NO_WINDOW, partialStatsOffset, queryBlock } from '../kernels/attention';
import { COMMIT, FORKED, kvCommit, NO_CARRY, POLICY_CODE, RESET, type CommitArgs, type MergeArgs } from '../kernels/kv-commit';
import { kvScore } from '../kernels/kv-score';
import { DEFAULT_KV_DTYPE, kvDtypeProblem, kvRowBytes, kvRowWords } from '../model/dtype';
import { unpackKvRows } from './quant';
import type { KvDtype, KvPolicyName, KvResidency, KvStats } from '../model/types';
import type { KvCache, KvCacheOptions, ModelShape, Segment } from './cache';
import { COUNTERS, kvCapacity, MAX_SPLITS, partialFloats, scoredPolicy, scratchLayout, stateLayout, streamKvBytes, type ScratchLayout, type StateLayout } from './layout';

/** Aim for at least this many workgroups per attention dispatch before splitting keys. */
const TARGET_WORKGROUPS = 1024;
/**
 * Splitting of the keys: a split has at least `minSplitKeys` keys (general kernel: 128) and a dispatch aims
 * for `targetWorkgroups` workgroups. The decode kernel's values are the benchmark's knobs.
 */
export const splitTuning = { minSplitKeys: 128, decodeMinSplitKeys: 128, decodeTargetWorkgroups: 512 };

let nextId = 0;

interface Stream {
  k: GPUBuffer;
  v: GPUBuffer;
  state: GPUBuffer;
}

export interface SlotCacheTuning {
  /** Force keys per attention split of the general kernel (tests); 0 or absent = automatic. */
  splitKeys?: number;
}

/** How one segment's attention is recorded: the kernel and its key splits. */
interface AttendChoice {
  decode: boolean;
  nsplit: number;
}

export class SlotKvCache implements KvCache {
  readonly policy: KvPolicyName;
  readonly dtype: KvDtype;
  /** Bytes of K and V of one resident token in one (layer, KV head): 2 x d x (2 or 4). */
  readonly bytesPerToken: number;
  /** Slots per (layer, seq, KV head). */
  readonly capacity: number;
  /** DMS window, or NO_WINDOW. */
  readonly window: number;
  readonly sequences: number;
  private readonly prefix: string;
  private readonly L: number;
  private readonly hq: number;
  private readonly hkv: number;
  private readonly d: number;
  private readonly maxStep: number;
  private readonly maxTokens: number;
  private readonly st: StateLayout;
  /** State word offset of carry[h] when DMS decisions are the tokens' own, else NO_CARRY. */
  private readonly carryOff: number;
  private readonly sc: ScratchLayout;
  private readonly streams: Stream[] = []; // [layer * S + seq]
  /** Attention's split partials, the softmax stats and dest (worker/kv/layout.ts, scratchLayout). */
  private readonly scratch: GPUBuffer;
  private readonly counters: GPUBuffer;
  /** Placeholders for bindings a dispatch does not use: one read-only, three read-write (writable bindings may not alias). */
  private readonly dummy: GPUBuffer;
  private readonly dummyW: GPUBuffer;
  private readonly dummyW2: GPUBuffer;
  private readonly dummyW3: GPUBuffer;
  private readonly code: number;
  /** Policy keeps attention-weight scores per slot (tova, h2o). */
  private readonly scored: boolean;
  private readonly sink: number;
  private readonly recent: number;
  /** Tokens each sequence has seen (the position of its next token; CPU-known, no readback). */
  readonly seen: number[];
  private segments: Segment[] = [];
  private alpha: GPUBuffer | null = null;
  private destroyed = false;
  splitKeys = 0;
  // CPU-side metrics (deterministic from the step protocol).
  private tokensSeen = 0;
  private tokenReadsFull = 0;
  private peakFull = 0;

  constructor(
    private readonly gpu: Gpu,
    shape: ModelShape,
    opts: KvCacheOptions & { tuning?: SlotCacheTuning },
  ) {
    const { numLayers: L, numHeads: hq, numKvHeads: hkv, headDim: d } = shape;
    if (!(L >= 1 && hkv >= 1 && hq % hkv === 0)) throw new Error(`KV cache: ${hq} query heads are not a multiple of ${hkv} KV heads`);
    if (!(d >= 8 && d <= 128 && d % 8 === 0)) throw new Error(`KV cache: head dim ${d} unsupported (8..128, a multiple of 8)`);
    if (!(opts.maxTokens >= 1 && opts.maxStepTokens >= 1)) throw new Error('KV cache: maxTokens and maxStepTokens must be >= 1');
    this.policy = opts.policy;
    this.dtype = opts.dtype ?? DEFAULT_KV_DTYPE;
    const problem = kvDtypeProblem(d, this.dtype);
    if (problem) throw new Error(`KV cache: ${problem}`);
    this.bytesPerToken = 2 * kvRowBytes(d, this.dtype);
    this.code = POLICY_CODE[opts.policy];
    if (this.code === undefined) throw new Error(`KV cache: unknown policy ${opts.policy}`);
    this.L = L;
    this.hq = hq;
    this.hkv = hkv;
    this.d = d;
    this.maxStep = opts.maxStepTokens;
    this.maxTokens = opts.maxTokens;
    this.sequences = opts.sequences ?? 1;
    this.seen = new Array(this.sequences).fill(0);
    this.splitKeys = opts.tuning?.splitKeys ?? 0;

    let w = NO_WINDOW;
    this.sink = 0;
    this.recent = 0;
    if (opts.policy === 'dms') {
      if (!shape.dms) throw new Error("KV cache: policy 'dms' needs a DMS model (modelShape.dms)");
      w = shape.dms.windowSize;
      if (!(w >= 0)) throw new Error(`KV cache: bad DMS window ${w}`);
    } else if (opts.policy !== 'full') {
      if (!(opts.budget && opts.budget >= 2)) throw new Error(`KV cache: policy '${opts.policy}' needs a budget >= 2`);
    }
    const cap = kvCapacity(shape, opts.policy, opts.maxTokens, opts.budget);
    if (opts.policy === 'dms' && cap < Math.min(opts.maxTokens, w + 1)) throw new Error(`KV cache: DMS budget ${cap} is below the window w+1 = ${w + 1}`);
    if (opts.policy === 'window') this.sink = Math.min(4, cap - 1);
    if (opts.policy === 'h2o') this.recent = Math.max(1, Math.floor(cap / 2));
    this.capacity = cap;
    this.window = w;

    this.prefix = `kv${nextId++} `;
    this.scored = scoredPolicy(opts.policy);
    this.st = stateLayout(hkv, cap, opts.policy, w === NO_WINDOW ? 0 : w);
    // A FastDMS checkpoint's decisions are the tokens' own (worker/kv/cache.ts, write()): the state carries each
    // stream's last one to its next step.
    this.carryOff = opts.policy === 'dms' && shape.dms?.convention === 'fastdms' && !shape.dms.separateAlpha ? this.st.carryOff : NO_CARRY;
    this.sc = scratchLayout(hq, hkv, d, this.maxStep, this.scored);
    const kvBytes = streamKvBytes(hkv, cap, d, this.dtype);
    if (kvBytes > gpu.caps.maxStorageBufferBindingSize) {
      throw new Error(`KV cache: one (layer, sequence) needs ${kvBytes} bytes of K, over this GPU's maxStorageBufferBindingSize ${gpu.caps.maxStorageBufferBindingSize}; lower maxTokens or the budget`);
    }
    for (let l = 0; l < L; l++) {
      for (let s = 0; s < this.sequences; s++) {
        this.streams.push({
          k: gpu.buffer(`${this.prefix}K l${l} s${s}`, kvBytes),
          v: gpu.buffer(`${this.prefix}V l${l} s${s}`, kvBytes),
          state: gpu.upload(`${this.prefix}state l${l} s${s}`, new Uint32Array(this.st.words)),
        });
      }
    }
    this.scratch = gpu.buffer(`${this.prefix}scratch`, this.sc.words * 4);
    this.counters = gpu.upload(`${this.prefix}counters`, new Uint32Array(COUNTERS));
    this.dummy = gpu.buffer(`${this.prefix}dummy`, 16);
    this.dummyW = gpu.buffer(`${this.prefix}dummyW`, 16);
    this.dummyW2 = gpu.buffer(`${this.prefix}dummyW2`, 16);
    this.dummyW3 = gpu.buffer(`${this.prefix}dummyW3`, 16);
  }

  private stream(layer: number, seq: number): Stream {
    return this.streams[layer * this.sequences + seq];
  }

  begin(_enc: Encoder, segments: Segment[]): void {
    this.check();
    const seen = new Set<number>();
    let rows = 0;
    for (const s of segments) {
      if (!(s.seq >= 0 && s.seq < this.sequences)) throw new Error(`KV cache: sequence ${s.seq} out of range (${this.sequences} sequences)`);
      if (seen.has(s.seq)) throw new Error(`KV cache: sequence ${s.seq} appears twice in one step`);
      seen.add(s.seq);
      if (!(s.tokens >= 1)) throw new Error('KV cache: a segment needs at least one token');
      if (s.pos0 !== this.seen[s.seq]) throw new Error(`KV cache: sequence ${s.seq} continues at position ${this.seen[s.seq]}, not ${s.pos0}`);
      if (s.pos0 + s.tokens > this.maxTokens) throw new Error(`KV cache: sequence ${s.seq} would exceed maxTokens ${this.maxTokens}`);
      rows += s.tokens;
    }
    if (rows > this.maxStep) throw new Error(`KV cache: ${rows} rows in one step, over maxStepTokens ${this.maxStep}`);
    this.segments = segments.map((s) => ({ ...s }));
  }

  write(_enc: Encoder, _layer: number, _qkv: GPUBuffer, alpha: GPUBuffer | null): void {
    this.check();
    if (this.policy === 'dms' && !alpha) throw new Error("KV cache: policy 'dms' needs the alpha logits in write()");
    // Nothing to record: attention reads the step's keys and decisions from qkv/alpha, and the commit
    // at the end of attend() applies the decisions (the first row's marks the previous step's last token).
    this.alpha = alpha;
  }

  /** The kernel and key splits attend() records for a segment (a function of its shape and length only). */
  private choose(seg: Segment): AttendChoice {
    const keysUpper = Math.min(this.capacity, seg.pos0) + seg.tokens;
    if (seg.tokens === 1 && this.splitKeys === 0 && decodeLanes(this.gpu, this.d, this.hq / this.hkv) > 0) {
      // Lengths bucketed to powers of two, so a recorded decode step stays valid for many tokens.
      const bucket = 2 ** Math.ceil(Math.log2(Math.max(1, keysUpper)));
      const most = Math.min(MAX_SPLITS, Math.ceil(splitTuning.decodeTargetWorkgroups / this.hkv));
      return { decode: true, nsplit: Math.max(1, Math.min(most, Math.ceil(bucket / splitTuning.decodeMinSplitKeys))) };
    }
    return { decode: false, nsplit: this.chooseSplit(seg.tokens, keysUpper) };
  }

  /** Key splits of the general kernel for a segment (1 = no split). */
  private chooseSplit(T: number, keysUpper: number): number {
    const perSplit = partialFloats(T, this.hq, this.d, 1);
    const maxSplits = Math.min(MAX_SPLITS, Math.floor(this.sc.partFloats / perSplit));
    if (maxSplits < 2) return 1;
    let n: number;
    if (this.splitKeys > 0) {
      n = Math.ceil(keysUpper / this.splitKeys);
    } else {
      const base = this.hkv * Math.ceil((T * (this.hq / this.hkv)) / queryBlock(this.d));
      if (base >= TARGET_WORKGROUPS || keysUpper <= splitTuning.minSplitKeys) return 1;
      n = Math.min(Math.ceil(keysUpper / splitTuning.minSplitKeys), Math.ceil(TARGET_WORKGROUPS / base));
    }
    return Math.max(1, Math.min(n, maxSplits));
  }

  planKey(segments: Segment[]): string {
    return segments.map((s) => {
      const c = this.choose(s);
      return `${s.seq}.${s.row}.${s.tokens}${c.decode ? 'd' : 'a'}${c.nsplit}`;
    }).join(' ');
  }

  attend(enc: Encoder, layer: number, qkv: GPUBuffer, out: GPUBuffer): void {
    this.check();
    const alpha: Binding = this.policy === 'dms' ? this.alpha! : this.dummy;
    const { hq, hkv, d, dtype } = this;
    for (const seg of this.segments) {
      const st = this.stream(layer, seg.seq);
      const { decode, nsplit } = this.choose(seg);
      const T = seg.tokens;
      const where = { rowBase: seg.row, hq, hkv, d, cap: this.capacity, w: this.window, seenOff: this.st.seenOff, posOff: this.st.posOff, carryOff: this.carryOff, nsplit, dtype };
      const part = this.scratch;
      if (decode) attentionDecode(enc, where, { qkv, alpha, k: st.k, v: st.v, state: st.state, part });
      else attention(enc, { ...where, T, statOff: this.scored && nsplit === 1 ? this.sc.statOff : -1 }, { qkv, alpha, k: st.k, v: st.v, state: st.state, out, part });
      const merge: MergeArgs | null = decode || nsplit > 1
        ? { nsplit, mlOff: partialStatsOffset(T, hq, d, nsplit), statOff: this.scored ? this.sc.statOff : -1 }
        : null;
      const shape = { T, rowBase: seg.row, hq, hkv, d, dtype };
      const bufs = { scratch: this.scratch, out, qkv, alpha, k: st.k, v: st.v, state: st.state, counters: this.counters };
      if (this.scored) {
        // The scores need the merged softmax stats, and the commit needs the scores.
        if (merge) kvCommit(enc, shape, null, merge, bufs);
        kvScore(
          enc,
          {
            T, rowBase: seg.row, hq, hkv, d, cap: this.capacity, scoreOff: this.st.scoreOff, statOff: this.sc.statOff, destOff: this.sc.destOff,
            rowStart: this.policy === 'tova' ? T - 1 : 0, accumulate: this.policy === 'h2o', maxStep: this.maxStep,
            keysUpper: this.capacity + T, dtype,
          },
          { qkv, k: st.k, state: st.state, scratch: this.scratch },
        );
        kvCommit(enc, shape, this.commitArgs(COMMIT), null, bufs);
      } else {
        kvCommit(enc, shape, this.commitArgs(COMMIT), merge, bufs);
      }
    }
  }

  private commitArgs(mode: number): CommitArgs {
    return {
      mode, cap: this.capacity,
      w: this.window === NO_WINDOW ? 0 : this.window, seenOff: this.st.seenOff, posOff: this.st.posOff, ringOff: this.st.ringOff, carryOff: this.carryOff,
      scoreOff: this.st.scoreOff, destOff: this.sc.destOff, policy: this.code, maxStep: this.maxStep, sink: this.sink, recent: this.recent,
    };
  }

  end(_enc: Encoder): void {
    this.check();
    for (const seg of this.segments) {
      if (seg.tokens === 1) this.tokenReadsFull += (seg.pos0 + 1) * this.L * this.hkv;
      this.seen[seg.seq] += seg.tokens;
      this.tokensSeen += seg.tokens;
    }
    this.peakFull = Math.max(this.peakFull, this.seen.reduce((a, b) => a + b, 0) * this.L * this.hkv);
    this.segments = [];
    this.alpha = null;
  }

  async stats(): Promise<KvStats> {
    this.check();
    const c = await this.gpu.readU32(this.counters, COUNTERS);
    const peak = c[1];
    return {
      policy: this.policy,
      tokensSeen: this.tokensSeen,
      residentTokens: c[0],
      peakTokens: peak,
      peakTokensFull: this.peakFull,
      tokenReads: c[2] + c[3] * 4294967296,
      tokenReadsFull: this.tokenReadsFull,
      compression: peak > 0 ? this.peakFull / peak : 1,
      peakBytes: peak * this.bytesPerToken,
      allocatedBytes: this.gpu.bytes(this.prefix),
      kvDtype: this.dtype,
      bytesPerToken: this.bytesPerToken,
      budgetEvictions: c[4],
    };
  }

  /** Reads back the positions resident in one stream, sorted (tests and debugging; not for the step loop). */
  async residentPositions(layer: number, seq: number, kvHead: number): Promise<number[]> {
    const st = await this.gpu.readU32(this.stream(layer, seq).state, this.st.posOff + this.hkv * this.capacity);
    const len = st[kvHead];
    const out: number[] = [];
    for (let s = 0; s < len; s++) out.push(st[this.st.posOff + kvHead * this.capacity + s] & 0x7fffffff);
    return out.sort((a, b) => a - b);
  }

  /**
   * Reads back one stream's resident tokens sorted by position, with their DMS mark and (tova/h2o)
   * eviction score (tests and debugging; not for the step loop).
   */
  async inspect(layer: number, seq: number, kvHead: number): Promise<Array<{ pos: number; marked: boolean; score: number | null }>> {
    const st = await this.gpu.readU32(this.stream(layer, seq).state, this.st.words);
    const f = new Float32Array(st.buffer);
    const out = [];
    for (let s = 0; s < st[kvHead]; s++) {
      const w = st[this.st.posOff + kvHead * this.capacity + s];
      out.push({ pos: w & 0x7fffffff, marked: w >>> 31 === 1, score: this.scored ? f[this.st.scoreOff + kvHead * this.capacity + s] : null });
    }
    return out.sort((a, b) => a.pos - b.pos);
  }

  /**
   * Reads back one stream's resident keys and values as stored (f16 decoded exactly to f32), sorted by
   * position (tests and debugging; not for the step loop).
   */
  async keysValues(layer: number, seq: number, kvHead: number): Promise<Array<{ pos: number; k: Float32Array; v: Float32Array }>> {
    const st = this.stream(layer, seq);
    const state = await this.gpu.readU32(st.state, this.st.posOff + this.hkv * this.capacity);
    const len = state[kvHead];
    if (len === 0) return [];
    const w = kvRowWords(this.d, this.dtype);
    const scaleBase = 4 * this.hkv * this.capacity * w.data;
    const decode = async (buf: GPUBuffer): Promise<Float32Array> => {
      const data = new Uint32Array(await this.gpu.read(buf, kvHead * this.capacity * w.data * 4, len * w.data * 4));
      const scales = w.scale ? new Uint32Array(await this.gpu.read(buf, scaleBase + kvHead * this.capacity * w.scale * 4, len * w.scale * 4)) : new Uint32Array(0);
      return unpackKvRows(data, scales, len, this.d, this.dtype);
    };
    const k = await decode(st.k);
    const v = await decode(st.v);
    const out = [];
    for (let s = 0; s < len; s++) {
      out.push({ pos: state[this.st.posOff + kvHead * this.capacity + s] & 0x7fffffff, k: k.slice(s * this.d, (s + 1) * this.d), v: v.slice(s * this.d, (s + 1) * this.d) });
    }
    return out.sort((a, b) => a.pos - b.pos);
  }

  async residency(seq = 0): Promise<KvResidency> {
    this.check();
    const tokens = this.seen[seq];
    const bits = new Uint8Array(this.L * this.hkv * tokens);
    for (let l = 0; l < this.L; l++) {
      const st = await this.gpu.readU32(this.stream(l, seq).state, this.st.posOff + this.hkv * this.capacity);
      for (let h = 0; h < this.hkv; h++) {
        const row = (l * this.hkv + h) * tokens;
        for (let s = 0; s < st[h]; s++) {
          const pos = st[this.st.posOff + h * this.capacity + s] & 0x7fffffff;
          if (pos < tokens) bits[row + pos] = 1;
        }
      }
    }
    return { tokens, layers: this.L, kvHeads: this.hkv, window: this.policy === 'dms' ? this.window : null, bits };
  }

  /**
   * Benchmarks only: makes sequence `seq` look as if it had seen `tokens` tokens, of which every
   * token of the last w+1 and a `keptFraction` of the older ones are resident (evenly spread), without
   * running the model. K/V hold zeros; positions, DMS ring and the resident counter are consistent,
   * so attention reads exactly as many keys as a real cache of that size.
   */
  prime(seq: number, tokens: number, keptFraction = 1): void {
    this.check();
    if (tokens > this.maxTokens) throw new Error(`KV cache: cannot prime ${tokens} tokens, maxTokens is ${this.maxTokens}`);
    const win = this.policy === 'dms' ? this.window + 1 : tokens;
    const resident: number[] = [];
    let acc = 0;
    for (let t = 0; t < tokens; t++) {
      const recent = t >= tokens - win;
      acc += keptFraction;
      if (recent || acc >= 1) resident.push(t);
      if (!recent && acc >= 1) acc -= 1;
    }
    if (resident.length > this.capacity) throw new Error(`KV cache: ${resident.length} resident tokens exceed the capacity ${this.capacity}`);
    const state = new Uint32Array(this.st.words);
    for (let h = 0; h < this.hkv; h++) {
      state[h] = resident.length;
      state[this.st.seenOff + h] = tokens;
      resident.forEach((t, slot) => {
        // Older tokens are kept (unmarked); window tokens carry a mark at the eviction rate.
        const marked = t >= tokens - win && this.policy === 'dms' && (t * 2654435761) % 1000 >= keptFraction * 1000;
        state[this.st.posOff + h * this.capacity + slot] = (t | (marked ? 0x80000000 : 0)) >>> 0;
        if (this.policy === 'dms' && t >= tokens - win) state[this.st.ringOff + h * (this.window + 1) + (t % (this.window + 1))] = slot;
      });
    }
    for (let l = 0; l < this.L; l++) this.gpu.write(this.stream(l, seq).state, state);
    this.seen[seq] = tokens;
    this.tokensSeen += tokens;
    this.peakFull = Math.max(this.peakFull, this.seen.reduce((a, b) => a + b, 0) * this.L * this.hkv);
    const counters = new Uint32Array(COUNTERS);
    counters[0] = counters[1] = resident.length * this.L * this.hkv * this.seen.filter((n) => n > 0).length;
    this.gpu.write(this.counters, counters);
  }

  reset(seq?: number): void {
    this.check();
    const seqs = seq === undefined ? [...this.seen.keys()] : [seq];
    const enc = new Encoder(this.gpu, 'kv reset');
    for (const s of seqs) {
      if (!(s >= 0 && s < this.sequences)) throw new Error(`KV cache: sequence ${s} out of range`);
      for (let l = 0; l < this.L; l++) this.recordMode(enc, RESET, this.stream(l, s).state);
      this.seen[s] = 0;
    }
    enc.submit();
    if (seq === undefined) {
      this.gpu.write(this.counters, new Uint32Array(COUNTERS));
      this.tokensSeen = 0;
      this.tokenReadsFull = 0;
      this.peakFull = 0;
    }
  }

  fork(src: number, dsts: number[]): void {
    this.check();
    if (!(src >= 0 && src < this.sequences)) throw new Error(`KV cache: sequence ${src} out of range`);
    const enc = new Encoder(this.gpu, 'kv fork');
    for (const dst of dsts) {
      if (!(dst >= 0 && dst < this.sequences) || dst === src) throw new Error(`KV cache: cannot fork ${src} into ${dst}`);
      for (let l = 0; l < this.L; l++) {
        const a = this.stream(l, src);
        const b = this.stream(l, dst);
        this.recordMode(enc, RESET, b.state);
        enc.copy(a.k, 0, b.k, 0, a.k.size);
        enc.copy(a.v, 0, b.v, 0, a.v.size);
        enc.copy(a.state, 0, b.state, 0, a.state.size);
        this.recordMode(enc, FORKED, b.state);
      }
      this.seen[dst] = this.seen[src];
    }
    enc.submit();
    this.peakFull = Math.max(this.peakFull, this.seen.reduce((x, y) => x + y, 0) * this.L * this.hkv);
  }

  /** Records a stream bookkeeping pass of kv_commit.wgsl (RESET or FORKED) on one state buffer. */
  private recordMode(enc: Encoder, mode: number, state: GPUBuffer): void {
    const bufs = { scratch: this.scratch, out: this.dummyW3, qkv: this.dummy, alpha: this.dummy, k: this.dummyW, v: this.dummyW2, state, counters: this.counters };
    kvCommit(enc, { T: 1, rowBase: 0, hq: this.hq, hkv: this.hkv, d: this.d, dtype: this.dtype }, this.commitArgs(mode), null, bufs);
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const s of this.streams) {
      this.gpu.destroy(s.k);
      this.gpu.destroy(s.v);
      this.gpu.destroy(s.state);
    }
    for (const b of [this.scratch, this.counters, this.dummy, this.dummyW, this.dummyW2, this.dummyW3]) this.gpu.destroy(b);
  }

  private check(): void {
    if (this.destroyed) throw new Error('KV cache: used after destroy()');
  }
}
