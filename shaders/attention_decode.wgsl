// Decode attention (flash-decoding): the one query row of a segment (T = 1), its G = hq / hkv query heads of
// KV head h, over the stream's resident slots [0, len) and the step's own key (read from qkv, after them).
// Same keys, visibility and f16 rounding as attention.wgsl (see there); this kernel is shaped for reading a
// long cache at the memory's speed. One workgroup = one KV head x one key split; it always writes partials
// (acc, m, l) that kv_commit.wgsl merges, even with one split.
//
// Specialized by worker/kernels/attention.ts, which prepends the constants WG (invocations), G (query heads per KV head),
// D (head dim), LG (lanes per key group: a power of two no larger than the subgroup size), NCH
// (= ceil(D / 8 / LG)), KB (keys per group step) and SN, SR (subgroup_scatter_sum.wgsl for the KB x G scores),
// and keeps or drops the `// #if` blocks F16, Q8, Q4 and QUANT (q8 or q4).
// The WG invocations form NG = WG / LG key groups of LG lanes, each group inside one subgroup. A key's D
// values are D/8 chunks of 8 (16 bytes of f16, 32 of f32); lane j of a group owns chunks j, j + LG, ... of
// every key, for K (partial dot products, summed over the group by reduce-scatter, then each total fetched
// from the lane that holds it) and for V (its slice of the output). The query slices live in registers. Every lane of a group ends with the same
// scores, so the group's online softmax (m, l per query head; one rescale per KB keys) needs no exchange.
// The split's keys are walked NG x KB at a time (group q takes KB consecutive keys of each step); the
// NG groups are combined in workgroup memory at the end. The step count is uniform over the workgroup, so
// the shuffles run in uniform control flow.
enable subgroups;

// struct Params: declared once as DECODE_PARAMS in worker/kernels/attention.ts, which puts it before this source.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> alpha: array<f32>;
// q8 and q4 bind words (a chunk's codes and the row's scale are plain u32 loads), f16 and f32 vec4u.
// #if QUANT
@group(0) @binding(3) var<storage, read> kc: array<u32>;
@group(0) @binding(4) var<storage, read> vc: array<u32>;
// #else
@group(0) @binding(3) var<storage, read> kc: array<vec4u>;
@group(0) @binding(4) var<storage, read> vc: array<vec4u>;
// #endif
@group(0) @binding(5) var<storage, read> state: array<u32>;
@group(0) @binding(6) var<storage, read_write> part: array<f32>;

const NG: u32 = WG / LG;
const NEG: f32 = -3.0e38;
const NONE: u32 = 0xffffffffu;
// #if F16
const CW: u32 = 1u; // vec4u words per chunk of 8 values
// #else
const CW: u32 = 2u;
// #endif

var<workgroup> wlen: u32;
var<workgroup> wpos0: u32;
var<workgroup> wmark: u32;
var<workgroup> subgroups: atomic<u32>;
var<workgroup> gm: array<f32, NG * G>;
var<workgroup> gl: array<f32, NG * G>;
var<workgroup> gacc: array<f32, G * D>;
// The step's own key (values 0 .. D-1) and value (D .. 2D-1), rounded as the cache will store them, taken once
// per workgroup (stepChunk's loops over the head, inlined in the key loop, made the q8 kernel 2x slower than
// f16). Workgroup memory rather than registers: this kernel sits at a register cliff (more keys a step spill).
var<workgroup> own: array<f32, 2u * D>;

// rnd(), q8Round() ...:
// #include f16_round.wgsl
// #include kv_quant.wgsl
// #include dms_decision.wgsl
// #include subgroup_scatter_sum.wgsl

// Chunk c (values 8c .. 8c+7) of the key (keyChunk) or value (valueChunk) of resident slot k of head h.
// #if Q8
fn q8Chunk(w0: u32, w1: u32, s: f32) -> array<f32, 8> {
  let a = q8Codes(w0) * s; let b = q8Codes(w1) * s;
  return array<f32, 8>(a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w);
}
fn scaleIndex(h: u32, k: u32) -> u32 { return p.hkv * p.cap * (D / 4u) + h * p.cap + k; }
fn keyChunk(h: u32, k: u32, c: u32) -> array<f32, 8> {
  let w = (h * p.cap + k) * (D / 4u) + 2u * c;
  return q8Chunk(kc[w], kc[w + 1u], bitcast<f32>(kc[scaleIndex(h, k)]));
}
fn valueChunk(h: u32, k: u32, c: u32) -> array<f32, 8> {
  let w = (h * p.cap + k) * (D / 4u) + 2u * c;
  return q8Chunk(vc[w], vc[w + 1u], bitcast<f32>(vc[scaleIndex(h, k)]));
}
// #else
// #if Q4
fn q4Chunk(w: u32, s: f32) -> array<f32, 8> {
  var q = q4Codes(w);
  for (var e = 0u; e < 8u; e++) { q[e] *= s; }
  return q;
}
fn scaleIndex(h: u32, k: u32, c: u32) -> u32 { return p.hkv * p.cap * (D / 8u) + (h * p.cap + k) * ((D + 63u) / 64u) + c / 8u; }
fn keyChunk(h: u32, k: u32, c: u32) -> array<f32, 8> {
  return q4Chunk(kc[(h * p.cap + k) * (D / 8u) + c], q4ScaleOf(kc[scaleIndex(h, k, c)], c / 4u));
}
fn valueChunk(h: u32, k: u32, c: u32) -> array<f32, 8> {
  return q4Chunk(vc[(h * p.cap + k) * (D / 8u) + c], q4ScaleOf(vc[scaleIndex(h, k, c)], c / 4u));
}
// #else
// Values of a chunk from its words: w0 (f16: all 8 halves), or w0 and w1 (f32).
fn chunk(w0: vec4u, w1: vec4u) -> array<f32, 8> {
// #if F16
  let a = unpack2x16float(w0.x); let b = unpack2x16float(w0.y); let c = unpack2x16float(w0.z); let d = unpack2x16float(w0.w);
  return array<f32, 8>(a.x, a.y, b.x, b.y, c.x, c.y, d.x, d.y);
// #else
  let lo = bitcast<vec4f>(w0);
  let hi = bitcast<vec4f>(w1);
  return array<f32, 8>(lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w);
// #endif
}
fn keyChunk(h: u32, k: u32, c: u32) -> array<f32, 8> {
  let w = ((h * p.cap + k) * (D / 8u) + c) * CW;
  return chunk(kc[w], kc[w + CW - 1u]);
}
fn valueChunk(h: u32, k: u32, c: u32) -> array<f32, 8> {
  let w = ((h * p.cap + k) * (D / 8u) + c) * CW;
  return chunk(vc[w], vc[w + CW - 1u]);
}
// #endif
// #endif

// Chunk c of the step's own key (kv = 0) or value (kv = 1), from qkv, rounded as the cache will store it.
fn stepChunk(h: u32, kv: u32, c: u32) -> array<f32, 8> {
  var o: array<f32, 8>;
  let b = p.rowBase * p.stride + (p.hq + kv * p.hkv + h) * D;
// #if Q8
  var amax = 0.0;
  for (var e = 0u; e < D; e++) { amax = max(amax, abs(qkv[b + e])); }
  let s = q8Scale(amax);
// #endif
// #if Q4
  var m = vec2f(0.0);
  for (var e = 0u; e < 32u; e++) { m = q4Max(m, qkv[b + 32u * (c / 4u) + e]); }
  let s = q4Scale(m.x);
// #endif
  for (var e = 0u; e < 8u; e++) {
    let x = qkv[b + 8u * c + e];
// #if F16
    o[e] = rnd(x);
// #else
// #if Q8
    o[e] = q8Round(x, s);
// #else
// #if Q4
    o[e] = q4Round(x, s);
// #else
    o[e] = x;
// #endif
// #endif
// #endif
  }
  return o;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32,
        @builtin(subgroup_invocation_id) sgi: u32, @builtin(subgroup_size) sgs: u32) {
  let wgi = wid.x + wid.y * nwg.x;
  if (wgi >= p.hkv * p.nsplit) { return; }
  let s = wgi % p.nsplit;
  let h = wgi / p.nsplit;

  // Key groups: claimed per subgroup, so that no assumption is made on how invocations map to subgroups.
  var sub = 0u;
  if (sgi == 0u) { sub = atomicAdd(&subgroups, 1u); }
  sub = subgroupBroadcastFirst(sub);
  let grp = sub * (sgs / LG) + sgi / LG;
  let lane = sgi % LG;

  if (lid == 0u) {
    wlen = state[h];
    wpos0 = state[p.seenOff + h];
    // DMS: the previous step's last token (pos0 - 1) is marked by decisionBefore(0) (committed after).
    wmark = select(0u, 1u, p.w != NONE && decisionBefore(0u, h) > 0.0);
  }
  let len = workgroupUniformLoad(&wlen);
  let pos0 = workgroupUniformLoad(&wpos0);
  let markPrev = workgroupUniformLoad(&wmark) == 1u;

  // This lane's slices of the G queries, pre-scaled by 1/sqrt(d).
  var q: array<array<f32, 8>, G * NCH>;
  for (var j = 0u; j < G; j++) {
    for (var i = 0u; i < NCH; i++) {
      let c = lane + i * LG;
      for (var e = 0u; e < 8u; e++) {
        var v = 0.0;
        if (c < D / 8u) { v = qkv[p.rowBase * p.stride + (h * G + j) * D + 8u * c + e] * p.scale; }
        q[j * NCH + i][e] = v;
      }
    }
  }

  let nk = len + 1u;
  let stepKeys = NG * KB;
  let splitKeys = (((nk + p.nsplit - 1u) / p.nsplit + stepKeys - 1u) / stepKeys) * stepKeys;
  let kStart = s * splitKeys;
  let kEnd = min(nk, kStart + splitKeys);
  var m: array<f32, G>;
  var l: array<f32, G>;
  var acc: array<array<f32, 8>, G * NCH>;
  for (var j = 0u; j < G; j++) {
    m[j] = NEG;
    l[j] = 0.0;
    for (var i = 0u; i < NCH; i++) { acc[j * NCH + i] = array<f32, 8>(); }
  }

  // The step's own key and value: the last key, in the last split only.
  if (kEnd == nk) {
    for (var c = lid; c < D / 4u; c += WG) {
      let kv = c / (D / 8u);
      let cc = c % (D / 8u);
      let o = stepChunk(h, kv, cc);
      for (var e = 0u; e < 8u; e++) { own[kv * D + 8u * cc + e] = o[e]; }
    }
  }
  workgroupBarrier();

  let steps = select(0u, (kEnd - kStart + stepKeys - 1u) / stepKeys, kEnd > kStart);
  for (var it = 0u; it < steps; it++) {
    let k0 = kStart + it * stepKeys + grp * KB;
    var sc: array<f32, KB * G>;
    var vv: array<array<f32, 8>, KB * NCH>;
    for (var b = 0u; b < KB; b++) {
      let k = k0 + b;
      for (var j = 0u; j < G; j++) { sc[b * G + j] = 0.0; }
      for (var i = 0u; i < NCH; i++) {
        let c = lane + i * LG;
        var kk = array<f32, 8>();
        var v = array<f32, 8>();
        if (k < kEnd && c < D / 8u) {
          if (k < len) {
            kk = keyChunk(h, k, c);
            v = valueChunk(h, k, c);
          } else {
            for (var e = 0u; e < 8u; e++) {
              kk[e] = own[8u * c + e];
              v[e] = own[D + 8u * c + e];
            }
          }
        }
        vv[b * NCH + i] = v;
        for (var j = 0u; j < G; j++) {
          var d = 0.0;
          for (var e = 0u; e < 8u; e++) { d = fma(q[j * NCH + i][e], kk[e], d); }
          sc[b * G + j] += d;
        }
      }
    }
    var sv: array<f32, SN>;
    for (var e = 0u; e < KB * G; e++) { sv[e] = sc[e]; }
    let tot = scatterSum(sv, lane, LG);
    let src = sgi & ~((1u << SR) - 1u);
    for (var e = 0u; e < KB * G; e++) { sc[e] = subgroupShuffle(tot[e % SK], src | (e / SK)); }
    // Visibility (the query's position is pos0): keys past the split and DMS-evicted ones are masked.
    for (var b = 0u; b < KB; b++) {
      let k = k0 + b;
      var vis = k < kEnd;
      if (vis && k < len && p.w != NONE) {
        let ki = state[p.posOff + h * p.cap + k];
        let pos = ki & 0x7fffffffu;
        let marked = (ki >> 31u) == 1u || (markPrev && pos0 > 0u && pos == pos0 - 1u);
        vis = !marked || pos0 - pos <= p.w;
      }
      if (!vis) { for (var j = 0u; j < G; j++) { sc[b * G + j] = NEG; } }
    }
    for (var j = 0u; j < G; j++) {
      var mx = m[j];
      for (var b = 0u; b < KB; b++) { mx = max(mx, sc[b * G + j]); }
      let corr = exp(m[j] - mx);
      m[j] = mx;
      var pr: array<f32, KB>;
      var sum = 0.0;
      for (var b = 0u; b < KB; b++) {
        pr[b] = select(exp(sc[b * G + j] - mx), 0.0, sc[b * G + j] <= NEG * 0.5);
        sum += pr[b];
      }
      l[j] = l[j] * corr + sum;
      for (var i = 0u; i < NCH; i++) {
        for (var e = 0u; e < 8u; e++) {
          var o = acc[j * NCH + i][e] * corr;
          for (var b = 0u; b < KB; b++) { o = fma(pr[b], vv[b * NCH + i][e], o); }
          acc[j * NCH + i][e] = o;
        }
      }
    }
  }

  // Combine the groups: the maxima, then each group's rescaled sums added in turn.
  if (lane == 0u) {
    for (var j = 0u; j < G; j++) { gm[grp * G + j] = m[j]; }
  }
  workgroupBarrier();
  var f: array<f32, G>;
  for (var j = 0u; j < G; j++) {
    var mx = NEG;
    for (var q2 = 0u; q2 < NG; q2++) { mx = max(mx, gm[q2 * G + j]); }
    f[j] = exp(m[j] - mx);
    if (lane == 0u) { gl[grp * G + j] = l[j] * f[j]; }
    m[j] = mx;
  }
  for (var q2 = 0u; q2 < NG; q2++) {
    if (grp == q2) {
      for (var j = 0u; j < G; j++) {
        for (var i = 0u; i < NCH; i++) {
          let c = lane + i * LG;
          if (c < D / 8u) {
            for (var e = 0u; e < 8u; e++) {
              let o = (j * D) + 8u * c + e;
              let v = acc[j * NCH + i][e] * f[j];
              gacc[o] = select(gacc[o] + v, v, q2 == 0u);
            }
          }
        }
      }
    }
    workgroupBarrier();
  }
  for (var e = lid; e < G * D; e += WG) {
    let j = e / D;
    let idx = (h * G + j) * p.nsplit + s;
    part[idx * D + e % D] = gacc[e];
  }
  if (lid < G) {
    var sum = 0.0;
    for (var q2 = 0u; q2 < NG; q2++) { sum += gl[q2 * G + lid]; }
    let idx = (h * G + lid) * p.nsplit + s;
    part[p.mlOff + idx * 2u] = m[lid];
    part[p.mlOff + idx * 2u + 1u] = sum;
  }
}
