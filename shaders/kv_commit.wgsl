// The end of a layer's KV work in a step, two independent jobs in one dispatch (neither reads what the
// other writes, and a decode step is bound by how many dispatches it records):
//   workgroups [0, nMerge)            merge attention's key-split partials into `out` (one per (row, query head,
//                                     block of 32 columns))
//   workgroups [nMerge, nMerge + hkv) commit the step's tokens into the stream (one per KV head h)
// nMerge is T * hq * ceil(d / 32) when attention split its keys, else 0; the commit role is absent (nCommit = 0) when
// only the merge is wanted (tova/h2o score the keys between the two).
//
// Merge: out = sum_s acc_s e^(m_s - M) / sum_s l_s e^(m_s - M), M = max_s m_s, from the partials of
// attention.wgsl / attention_decode.wgsl in scratch (f32 bits): acc at idx * d, (m, l) at mlOff + idx * 2,
// idx = (r * hq + head) * nsplit + s. Empty splits carry m = -3e38, l = 0. With p.stats = 1, (M, L) of each
// (row, query head) go to scratch[statOff + (r * hq + head) * 2] for kv_score.wgsl.
//
// Commit. State words (per (layer, seq) buffer, worker/kv/layout.ts): len[h] at h; seen[h] at seenOff + h
// (the position of the stream's next token); pos[h][slot] at posOff (bit 31 = DMS mark "evict after the
// window"); ring[h][t % (w+1)] at ringOff = slot of token t, for the last w+1 tokens (DMS); carry[h] at
// carryOff (DMS with own decisions: f32 bits of the last token's decision); score[h][slot]
// at scoreOff (f32 bits, tova/h2o). dest[h * maxStep + r] at destOff of scratch: the slot of step row r.
// mode 0 (commit, after attention): inserts the step's T tokens t = seen + r one by one, in order:
//   DMS: token t-1 gets its mark from decisionBefore(row of t) (dms_decision.wgsl: alpha of that row, shift
//        by one, where for the first row t-1 is the previous step's last token; or t-1's own decision, from
//        alpha of the row before or the stream's carry, updated at the end); the candidate t-w-1, if marked,
//        gives its slot to t (delayed eviction, slot reuse); else t is appended.
//   all: if no slot is free, a victim is chosen by the policy (argmin of (key, pos) over eligible
//        resident slots) and its slot is reused; DMS counts it in budgetEvictions.
//   tova/h2o: an inserted token's score comes from dest[hkv * maxStep + h * maxStep + r] (kv_score.wgsl).
//   then copies K/V of the inserted tokens from qkv into their slots (tokens evicted within the step
//   are not copied): f32, or with the pipeline constant F16 rounded to f16 (clamped to ±65504) and
//   packed two per u32 (pack2x16float, even element in the low half), [Hkv][cap][d/2]; with Q8 / Q4
//   quantized (kv_quant.wgsl; layouts in worker/kv/quant.ts): codes [Hkv][cap][d/4 or d/8], then the
//   scales [Hkv][cap][1 or ceil(d/64)], 32 lanes per (row, K or V) for q8, eight per (row, K or V, scale word) for q4; seen += T.
// mode 2 (reset): len = seen = 0, subtracting len from the resident counter.
// mode 3 (forked): adds len to the resident counter (after the stream was copied from another sequence).
// Counters (u32): 0 resident tokens, 1 peak resident, 2/3 token reads lo/hi, 4 budget evictions,
// 5 policy evictions (training-free policies).
// struct Params: declared once as PARAMS in worker/kernels/kv-commit.ts, which puts it before this source.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> scratch: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> qkv: array<f32>;
@group(0) @binding(4) var<storage, read> alpha: array<f32>;
@group(0) @binding(5) var<storage, read_write> kc: array<u32>;
@group(0) @binding(6) var<storage, read_write> vc: array<u32>;
@group(0) @binding(7) var<storage, read_write> state: array<u32>;
@group(0) @binding(8) var<storage, read_write> counters: array<atomic<u32>>;

const FULL: u32 = 0u;
const DMS: u32 = 1u;
const WINDOW: u32 = 2u;
const TOVA: u32 = 3u;
const H2O: u32 = 4u;
const NONE: u32 = 0xffffffffu;
const BIG: f32 = 3.0e38;
// F16_MAX, rnd(), q8Code() ...:
// #include f16_round.wgsl
// #include kv_quant.wgsl
// #include dms_decision.wgsl

override F16: bool = false;
override Q8: bool = false;
override Q4: bool = false;

fn pack(a: f32, b: f32) -> u32 { return pack2x16float(clamp(vec2f(a, b), vec2f(-F16_MAX), vec2f(F16_MAX))); }

var<workgroup> wlen: u32;
var<workgroup> wslot: u32;
var<workgroup> wneed: u32;
var<workgroup> wseen: u32;
var<workgroup> bk: array<f32, 64>;
var<workgroup> bp: array<u32, 64>;
var<workgroup> bs: array<u32, 64>;

fn partial(i: u32) -> f32 { return bitcast<f32>(scratch[i]); }

// Split weights e^(m_s - M) of the (row, query head) being merged; MAX_SPLITS = 256 (worker/kv/layout.ts).
var<workgroup> sw: array<f32, 256>;

// Max (max = true) or sum over the 64 invocations of v, in bk (every invocation gets the result).
fn reduce64(v: f32, lid: u32, max_: bool) -> f32 {
  bk[lid] = v;
  workgroupBarrier();
  for (var off = 32u; off > 0u; off >>= 1u) {
    if (lid < off) { bk[lid] = select(bk[lid] + bk[lid + off], max(bk[lid], bk[lid + off]), max_); }
    workgroupBarrier();
  }
  let r = bk[0];
  workgroupBarrier();
  return r;
}

// One workgroup per (row, query head, block of 32 columns), so that a decode step's few (row, head) pairs
// still fill the GPU. The split weights are computed once per workgroup, in parallel; then each half of
// the workgroup sums every other split of the block's columns, four independent coalesced loads in flight
// per lane, and the halves are added in bk.
fn merge(wgi: u32, lid: u32) {
  let blocks = (p.d + 31u) / 32u;
  let pair = wgi / blocks;
  let c = (wgi % blocks) * 32u + lid % 32u;
  let idx0 = pair * p.nsplit;
  var mx = -3.0e38;
  for (var s = lid; s < p.nsplit; s += 64u) { mx = max(mx, partial(p.mlOff + (idx0 + s) * 2u)); }
  mx = reduce64(mx, lid, true);
  var l = 0.0;
  for (var s = lid; s < p.nsplit; s += 64u) {
    let e = exp(partial(p.mlOff + (idx0 + s) * 2u) - mx);
    sw[s] = e;
    l += partial(p.mlOff + (idx0 + s) * 2u + 1u) * e;
  }
  l = reduce64(l, lid, false);
  var o = vec4f(0.0);
  if (c < p.d) {
    var s = lid / 32u;
    for (; s + 6u < p.nsplit; s += 8u) {
      let v = vec4f(partial((idx0 + s) * p.d + c), partial((idx0 + s + 2u) * p.d + c),
        partial((idx0 + s + 4u) * p.d + c), partial((idx0 + s + 6u) * p.d + c));
      o = fma(v, vec4f(sw[s], sw[s + 2u], sw[s + 4u], sw[s + 6u]), o);
    }
    for (; s < p.nsplit; s += 2u) { o.x = fma(partial((idx0 + s) * p.d + c), sw[s], o.x); }
  }
  bk[lid] = (o.x + o.y) + (o.z + o.w);
  workgroupBarrier();
  if (lid < 32u && c < p.d) {
    let r = pair / p.hq;
    let head = pair % p.hq;
    out[(p.rowBase + r) * p.hq * p.d + head * p.d + c] = (bk[lid] + bk[lid + 32u]) / l;
  }
  if (lid == 0u && wgi % blocks == 0u && p.stats == 1u) {
    scratch[p.statOff + pair * 2u] = bitcast<u32>(mx);
    scratch[p.statOff + pair * 2u + 1u] = bitcast<u32>(l);
  }
}

fn posOf(h: u32, slot: u32) -> u32 { return state[p.posOff + h * p.cap + slot] & 0x7fffffffu; }

// Slot of token t if it is resident (DMS ring), else NONE.
fn ringSlot(h: u32, t: u32, len: u32) -> u32 {
  let s = state[p.ringOff + h * p.w1 + t % p.w1];
  if (s < len && posOf(h, s) == t) { return s; }
  return NONE;
}

fn destIndex(h: u32, r: u32) -> u32 { return p.destOff + h * p.maxStep + r; }

// The token at position `pos` was evicted during this step: do not copy it.
fn dropInStep(h: u32, pos: u32, pos0: u32) {
  if (pos >= pos0) { scratch[destIndex(h, pos - pos0)] = NONE; }
}

fn markPrev(h: u32, t: u32, r: u32, len: u32) {
  if (t == 0u) { return; }
  let s = ringSlot(h, t - 1u, len);
  if (s != NONE && decisionBefore(r, h) > 0.0) {
    let i = p.posOff + h * p.cap + s;
    state[i] = state[i] | 0x80000000u;
  }
}

fn add64(lo: u32, v: u32) {
  let old = atomicAdd(&counters[lo], v);
  if (old + v < old) { atomicAdd(&counters[lo + 1u], 1u); }
}

fn commit(h: u32, lid: u32) {
  if (p.mode == 2u) {
    if (lid == 0u) { atomicSub(&counters[0], state[h]); state[h] = 0u; state[p.seenOff + h] = 0u; }
    return;
  }
  if (p.mode == 3u) {
    if (lid == 0u) {
      let old = atomicAdd(&counters[0], state[h]);
      atomicMax(&counters[1], old + state[h]);
    }
    return;
  }
  if (lid == 0u) { wlen = state[h]; wseen = state[p.seenOff + h]; }
  let len0 = workgroupUniformLoad(&wlen);
  let pos0 = workgroupUniformLoad(&wseen);
  for (var r = 0u; r < p.T; r++) {
    let t = pos0 + r;
    if (lid == 0u) {
      var len = wlen;
      var slot = NONE;
      if (p.policy == DMS) {
        markPrev(h, t, r, len);
        if (t >= p.w1) {
          let cs = ringSlot(h, t - p.w1, len);
          if (cs != NONE && (state[p.posOff + h * p.cap + cs] >> 31u) == 1u) {
            slot = cs;
            dropInStep(h, t - p.w1, pos0);
          }
        }
      }
      if (slot == NONE && len < p.cap) { slot = len; len += 1u; }
      wlen = len;
      wslot = slot;
      wneed = select(0u, 1u, slot == NONE);
    }
    let need = workgroupUniformLoad(&wneed);
    if (need == 1u) {
      // Victim: the eligible resident slot with the smallest (key, pos).
      let len = wlen;
      var bestK = BIG;
      var bestP = NONE;
      var bestS = NONE;
      for (var s = lid; s < len; s += 64u) {
        let pos = posOf(h, s);
        var ok = true;
        var key = 0.0;
        if (p.policy == DMS) { ok = pos + p.w < t; }
        if (p.policy == WINDOW) { ok = pos >= p.sink; }
        if (p.policy == TOVA || p.policy == H2O) { key = bitcast<f32>(state[p.scoreOff + h * p.cap + s]); }
        if (p.policy == H2O) { ok = pos + p.recent <= t; }
        if (ok && (key < bestK || (key == bestK && pos < bestP))) { bestK = key; bestP = pos; bestS = s; }
      }
      bk[lid] = bestK; bp[lid] = bestP; bs[lid] = bestS;
      workgroupBarrier();
      for (var off = 32u; off > 0u; off >>= 1u) {
        if (lid < off) {
          let k2 = bk[lid + off];
          let p2 = bp[lid + off];
          if (bs[lid + off] != NONE && (bs[lid] == NONE || k2 < bk[lid] || (k2 == bk[lid] && p2 < bp[lid]))) {
            bk[lid] = k2; bp[lid] = p2; bs[lid] = bs[lid + off];
          }
        }
        workgroupBarrier();
      }
      if (lid == 0u) {
        let v = bs[0];
        if (v != NONE) {
          dropInStep(h, bp[0], pos0);
          if (p.policy == DMS) { atomicAdd(&counters[4], 1u); } else { atomicAdd(&counters[5], 1u); }
        }
        wslot = v;
      }
    }
    if (lid == 0u) {
      let slot = wslot;
      scratch[destIndex(h, r)] = slot;
      if (slot != NONE) {
        state[p.posOff + h * p.cap + slot] = t;
        if (p.policy == DMS) { state[p.ringOff + h * p.w1 + t % p.w1] = slot; }
        if (p.policy == TOVA || p.policy == H2O) {
          state[p.scoreOff + h * p.cap + slot] = scratch[destIndex(h, r) + p.hkv * p.maxStep];
        }
      }
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let len = wlen;
    state[h] = len;
    state[p.seenOff + h] = pos0 + p.T;
    let old = atomicAdd(&counters[0], len - len0);
    atomicMax(&counters[1], old + len - len0);
    if (p.T == 1u) { add64(2u, len0 + 1u); }
    // Own decisions: the last token's, which marks it at the next step (dms_decision.wgsl).
    if (p.carryOff != NONE) { state[p.carryOff + h] = bitcast<u32>(alpha[(p.rowBase + p.T - 1u) * p.hkv + h]); }
  }
  storageBarrier();
  workgroupBarrier();
  if (Q8) {
    // 32 lanes per (row, K or V), two rows per pass: lane j takes words j, j + 32, ... of the row (four values
    // each) for the scale (the max over the 32 lanes, in bk), then codes them. Eight lanes each walking 16
    // values in a loop of dependent loads made this ~5 µs a layer slower than the f16 copy.
    let dw = p.d / 4u;
    let j = lid % 32u;
    for (var e0 = 0u; e0 < p.T * 2u; e0 += 2u) {
      let e = e0 + lid / 32u;
      var slot = NONE;
      var src = 0u;
      var amax = 0.0;
      if (e < p.T * 2u) {
        slot = scratch[destIndex(h, e / 2u)];
        src = (p.rowBase + e / 2u) * p.stride + (p.hq + (e % 2u) * p.hkv + h) * p.d;
        for (var w = j; w < dw; w += 32u) {
          let b = src + 4u * w;
          amax = max(amax, max(max(abs(qkv[b]), abs(qkv[b + 1u])), max(abs(qkv[b + 2u]), abs(qkv[b + 3u]))));
        }
      }
      bk[lid] = amax;
      workgroupBarrier();
      for (var off = 16u; off > 0u; off >>= 1u) {
        if (j < off) { bk[lid] = max(bk[lid], bk[lid + off]); }
        workgroupBarrier();
      }
      let s = q8Scale(bk[lid - j]);
      workgroupBarrier();
      if (slot != NONE) {
        let row = h * p.cap + slot;
        for (var w = j; w < dw; w += 32u) {
          let b = src + 4u * w;
          let word = (u32(q8Code(qkv[b], s)) & 255u) | ((u32(q8Code(qkv[b + 1u], s)) & 255u) << 8u)
            | ((u32(q8Code(qkv[b + 2u], s)) & 255u) << 16u) | (u32(q8Code(qkv[b + 3u], s)) << 24u);
          if (e % 2u == 0u) { kc[row * dw + w] = word; } else { vc[row * dw + w] = word; }
        }
        if (j == 0u) {
          let so = p.hkv * p.cap * dw + row;
          if (e % 2u == 0u) { kc[so] = bitcast<u32>(s); } else { vc[so] = bitcast<u32>(s); }
        }
      }
    }
    return;
  }
  if (Q4) {
    // Eight lanes per (row, K or V, scale word): four per block of 32 values, one word of 8 codes each.
    // The block's value of largest magnitude (the first of equals) is reduced over its four lanes in bk,
    // adjacent lanes first so that the order is kept. Eight items per pass.
    let dw = p.d / 8u;
    let sw = (p.d + 63u) / 64u;
    let nb = p.d / 32u;
    let k = lid % 4u;
    for (var e0 = 0u; e0 < p.T * 2u * sw; e0 += 8u) {
      let e = e0 + lid / 8u;
      let b = ((e % sw) * 2u) + (lid / 4u) % 2u;
      let w = 4u * b + k;
      var slot = NONE;
      var src = 0u;
      var m = vec2f(0.0);
      if (e < p.T * 2u * sw) {
        slot = scratch[destIndex(h, e / (2u * sw))];
        src = (p.rowBase + e / (2u * sw)) * p.stride + (p.hq + ((e / sw) % 2u) * p.hkv + h) * p.d;
        if (b < nb) {
          for (var c = 0u; c < 8u; c++) { m = q4Max(m, qkv[src + 8u * w + c]); }
        }
      }
      bk[lid] = m.x;
      workgroupBarrier();
      if (k % 2u == 0u && abs(bk[lid + 1u]) > abs(bk[lid])) { bk[lid] = bk[lid + 1u]; }
      workgroupBarrier();
      if (k == 0u && abs(bk[lid + 2u]) > abs(bk[lid])) { bk[lid] = bk[lid + 2u]; }
      workgroupBarrier();
      // The item's two block scales (the second 0 when d / 32 is odd and it is the last); this lane's is sc[b % 2].
      let pairBase = lid - lid % 8u;
      let sc = vec2f(q4Scale(bk[pairBase]), select(0.0, q4Scale(bk[pairBase + 4u]), (e % sw) * 2u + 1u < nb));
      let s = sc[b % 2u];
      workgroupBarrier();
      if (slot != NONE && b < nb) {
        let row = h * p.cap + slot;
        var word = 0u;
        for (var c = 0u; c < 8u; c++) { word |= u32(q4Code(qkv[src + 8u * w + c], s) + 8) << (4u * c); }
        if ((e / sw) % 2u == 0u) { kc[row * dw + w] = word; } else { vc[row * dw + w] = word; }
        if (lid % 8u == 0u) {
          let so = p.hkv * p.cap * dw + row * sw + e % sw;
          if ((e / sw) % 2u == 0u) { kc[so] = pack2x16float(sc); } else { vc[so] = pack2x16float(sc); }
        }
      }
    }
    return;
  }
  if (F16) {
    let np = p.d / 2u;
    for (var e = lid; e < p.T * np; e += 64u) {
      let r = e / np;
      let slot = scratch[destIndex(h, r)];
      if (slot != NONE) {
        let cp = e % np;
        let src = (p.rowBase + r) * p.stride + h * p.d + 2u * cp;
        let ks = src + p.hq * p.d;
        let vs = src + (p.hq + p.hkv) * p.d;
        kc[(h * p.cap + slot) * np + cp] = pack(qkv[ks], qkv[ks + 1u]);
        vc[(h * p.cap + slot) * np + cp] = pack(qkv[vs], qkv[vs + 1u]);
      }
    }
    return;
  }
  for (var e = lid; e < p.T * p.d; e += 64u) {
    let r = e / p.d;
    let slot = scratch[destIndex(h, r)];
    if (slot != NONE) {
      let c = e % p.d;
      let src = (p.rowBase + r) * p.stride + h * p.d + c;
      kc[(h * p.cap + slot) * p.d + c] = bitcast<u32>(qkv[src + p.hq * p.d]);
      vc[(h * p.cap + slot) * p.d + c] = bitcast<u32>(qkv[src + (p.hq + p.hkv) * p.d]);
    }
  }
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let wgi = wid.x + wid.y * nwg.x;
  if (wgi < p.nMerge) {
    merge(wgi, lid);
    return;
  }
  let h = wgi - p.nMerge;
  if (h < p.nCommit) { commit(h, lid); }
}
