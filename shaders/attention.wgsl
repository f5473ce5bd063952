// Attention of one step's rows over a KV cache stream (see docs/kv-cache.md).
// Keys of KV head h = the cache's resident slots [0, len) of (layer, seq, h) followed by this step's own
// keys, read straight from qkv (row r sees step keys 0..r). The step's first position pos0 is the stream's
// seen[h] (state word seenOff + h, advanced by kv_commit.wgsl after attention). Visibility: all resident keys and causal step
// keys, and with DMS (p.w != NONE) a key at position j marked for eviction is hidden from query i once
// i - j > w. A key's DMS mark: resident slots carry it in bit 31 of their position word, except the
// previous step's last token (pos0 - 1), marked iff decisionBefore(0, h) > 0; step key r' is marked iff
// decisionBefore(r'+1, h) > 0 (dms_decision.wgsl: alpha of the next row, NVIDIA's shift by one, or the
// token's own decision).
// One workgroup = one KV head x one block of QH query vectors (row, head of the group) x one key split
// (flash-decoding: split s takes keys [s * S, (s + 1) * S), S = len + T spread over nsplit splits in tiles
// of 64, so one recorded dispatch serves any cache length). Online softmax over tiles of 64 keys. QH (query vectors per workgroup) and D (head
// dim) are pipeline constants so the per-thread loops unroll into registers. With one split the output
// is written normalised; otherwise partial (acc, m, l) go to `part` and kv_commit.wgsl merges them.
// Storage (pipeline constant F16): K and V of the cache are f32 [Hkv][cap][d], or with F16 two halves
// per u32 (pack2x16float, element c in the low half when c is even) [Hkv][cap][d/2]. K is bound as
// vec4u (16 bytes: 4 f32 or 8 f16 values), V as u32. With F16 the step's own keys and values, read
// from qkv in f32, are rounded to f16 the same way, so a key is the same number whether it is read
// from qkv (its own step) or from the cache (later steps): chunking does not change the result.
// With Q8 / Q4 (pipeline constants) K and V are codes then scales (worker/kv/quant.ts), read a word at a
// time and scaled as loaded; the step's own keys and values are quantized and back the same way
// (kv_quant.wgsl): the thread of a step key computes its key's scale(s) and its value's, the latter kept in
// workgroup memory (vsc) for the V phase.
// In the V phase a thread owns a pair of columns (2 cp, 2 cp + 1), cp = lid % (D/2), for the query
// vectors qv = lid / (D/2) + j * QG (QG = 64 / (D/2) groups of threads; D <= 128 so one pair each).
// With p.stats = 1 the softmax max and sum (m, l) of each (row, query head) are kept in
// part[statOff + (r * hq + head) * 2] for the attention-score kernel (kv_score.wgsl, tova/h2o).
// struct Params: declared once as PARAMS in worker/kernels/attention.ts, which puts it before this source.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> alpha: array<f32>;
@group(0) @binding(3) var<storage, read> kc: array<vec4u>;
@group(0) @binding(4) var<storage, read> vc: array<u32>;
@group(0) @binding(5) var<storage, read> state: array<u32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<storage, read_write> part: array<f32>;

override QH: u32 = 8u;    // QH * d <= 1024, 2 * ceil(QH / QG) <= 16
override D: u32 = 128u;   // head dim (= p.d, a multiple of 8, <= 128), a constant so the loops unroll
override F16: bool = false;
override Q8: bool = false;
override Q4: bool = false;

const WG: u32 = 64u;
const TK: u32 = 64u;
const MAXQH: u32 = 16u;
const NEG: f32 = -3.0e38;
const NONE: u32 = 0xffffffffu;
override NP: u32 = D / 2u;             // column pairs
override QG: u32 = 64u / NP;           // thread groups of the V phase (>= 1 since D <= 128)
override NJ: u32 = (QH + QG - 1u) / QG; // query vectors per thread in the V phase

var<workgroup> qs: array<vec4f, 256>;      // [QH][d/4], pre-scaled queries
var<workgroup> sc: array<f32, 1024>;       // [QH][TK] scores, then probabilities
var<workgroup> mrow: array<f32, 16>;
var<workgroup> lrow: array<f32, 16>;
var<workgroup> corr: array<f32, 16>;
var<workgroup> vsc: array<f32, 256>;      // Q8 / Q4: [TK][4] scales of the step values of the tile
var<workgroup> wlen: u32;
var<workgroup> wpos0: u32;
// The step's first position (seen[h]), for keyInfo() and visible().
var<private> pos0: u32;

// rnd(), rnd2() and F16_MAX; q8Round() ...:
// #include f16_round.wgsl
// #include kv_quant.wgsl
// #include dms_decision.wgsl

// Q8 / Q4: words per stored row, scale words per row, and the first scale word of the K / V buffers.
override QDW: u32 = select(D / 8u, D / 4u, Q8);
override QSW: u32 = select((D + 63u) / 64u, 1u, Q8);
override QNB: u32 = select(D / 32u, 1u, Q8); // scales per stored row
fn scaleBase() -> u32 { return p.hkv * p.cap * QDW; }

// Word i of the cache's K buffer.
fn kw(i: u32) -> u32 { return kc[i >> 2u][i & 3u]; }

// Q8: the scale of the step's key or value at qkv[b..b+D); Q4: of its block blk.
fn stepScale(b: u32, blk: u32) -> f32 {
  if (Q8) {
    var amax = 0.0;
    for (var c = 0u; c < D; c++) { amax = max(amax, abs(qkv[b + c])); }
    return q8Scale(amax);
  }
  var m = vec2f(0.0);
  for (var c = 0u; c < 32u; c++) { m = q4Max(m, qkv[b + 32u * blk + c]); }
  return q4Scale(m.x);
}
fn quant(x: f32, s: f32) -> f32 {
  if (Q8) { return q8Round(x, s); }
  return q4Round(x, s);
}

// Columns (2 cp, 2 cp + 1) of the value of resident slot k.
fn cachedV(k: u32, h: u32, cp: u32) -> vec2f {
  if (Q8) {
    let c = q8Codes(vc[(h * p.cap + k) * QDW + cp / 2u]);
    return select(c.xy, c.zw, cp % 2u == 1u) * bitcast<f32>(vc[scaleBase() + h * p.cap + k]);
  }
  if (Q4) {
    let w = vc[(h * p.cap + k) * QDW + cp / 4u] >> (8u * (cp % 4u));
    let s = q4ScaleOf(vc[scaleBase() + (h * p.cap + k) * QSW + cp / 32u], cp / 16u);
    return (vec2f(f32(w & 15u), f32((w >> 4u) & 15u)) - 8.0) * s;
  }
  if (F16) { return unpack2x16float(vc[(h * p.cap + k) * NP + cp]); }
  let o = (h * p.cap + k) * D + 2u * cp;
  return vec2f(bitcast<f32>(vc[o]), bitcast<f32>(vc[o + 1u]));
}

// Columns (2 cp, 2 cp + 1) of the value of key k (a resident slot, or a step key read from qkv).
fn loadV(k: u32, len: u32, h: u32, cp: u32) -> vec2f {
  if (k < len) { return cachedV(k, h, cp); }
  let o = (p.rowBase + k - len) * p.stride + (p.hq + p.hkv + h) * D + 2u * cp;
  let v = vec2f(qkv[o], qkv[o + 1u]);
  if (F16) { return rnd2(v); }
  if (Q8 || Q4) {
    let s = vsc[(k % TK) * 4u + select(0u, cp / 16u, Q4)];
    return vec2f(quant(v.x, s), quant(v.y, s));
  }
  return v;
}

// Position of key k (bits 0..30) and its DMS mark (bit 31), for visibility tests.
fn keyInfo(k: u32, len: u32, h: u32) -> u32 {
  if (k < len) {
    let ki = state[p.posOff + h * p.cap + k];
    // The previous step's last token is marked by this step's first decision (committed after attention).
    if (p.w != NONE && pos0 > 0u && (ki & 0x7fffffffu) == pos0 - 1u && decisionBefore(0u, h) > 0.0) {
      return ki | 0x80000000u;
    }
    return ki;
  }
  let rk = k - len;
  var m = 0u;
  if (rk + 1u < p.T && decisionBefore(rk + 1u, h) > 0.0) { m = 0x80000000u; }
  return (pos0 + rk) | m;
}

// Is a key with info `ki` visible to the query of step row r? (Resident keys are all older than the step.)
fn visible(ki: u32, r: u32) -> bool {
  let pos = ki & 0x7fffffffu;
  let i = pos0 + r;
  if (pos > i) { return false; }
  if (p.w == NONE || (ki >> 31u) == 0u) { return true; }
  return i - pos <= p.w;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let wgi = wid.x + wid.y * nwg.x;
  if (wgi >= p.hkv * p.nqb * p.nsplit) { return; }
  let s = wgi % p.nsplit;
  let qb = (wgi / p.nsplit) % p.nqb;
  let h = wgi / (p.nsplit * p.nqb);
  let d = D;
  let d4 = D / 4u;
  let nq = min(QH, p.T * p.g - qb * QH);

  for (var e = lid; e < QH * d4; e += WG) {
    let qv = e / d4;
    var v = vec4f(0.0);
    if (qv < nq) {
      let gq = qb * QH + qv;
      let o = (p.rowBase + gq / p.g) * p.stride + (h * p.g + gq % p.g) * d + (e % d4) * 4u;
      v = vec4f(qkv[o], qkv[o + 1u], qkv[o + 2u], qkv[o + 3u]) * p.scale;
    }
    qs[e] = v;
  }
  if (lid < MAXQH) { mrow[lid] = NEG; lrow[lid] = 0.0; corr[lid] = 1.0; }
  if (lid == 0u) { wlen = state[h]; wpos0 = state[p.seenOff + h]; }
  let len = workgroupUniformLoad(&wlen);
  pos0 = workgroupUniformLoad(&wpos0);

  let lastRow = (qb * QH + nq - 1u) / p.g;
  let nk = len + lastRow + 1u;
  let splitKeys = (((len + p.T + p.nsplit - 1u) / p.nsplit + TK - 1u) / TK) * TK;
  let kStart = s * splitKeys;
  let kEnd = min(nk, kStart + splitKeys);
  var acc: array<f32, 16>;
  for (var j = 0u; j < 16u; j++) { acc[j] = 0.0; }
  let cp = lid % NP;
  let qv0 = lid / NP;

  for (var kt = kStart; kt < kEnd; kt += TK) {
    let k = kt + lid;
    let inTile = k < kEnd;
    var sacc: array<f32, 16>;
    for (var qv = 0u; qv < QH; qv++) { sacc[qv] = 0.0; }
    if (inTile) {
      if (k < len) {
        if (Q8) {
          let b = (h * p.cap + k) * QDW;
          let s = bitcast<f32>(kw(scaleBase() + h * p.cap + k));
          for (var c = 0u; c < QDW; c++) {
            let kv = q8Codes(kw(b + c)) * s;
            for (var qv = 0u; qv < QH; qv++) { sacc[qv] += dot(kv, qs[qv * d4 + c]); }
          }
        } else if (Q4) {
          let b = (h * p.cap + k) * QDW;
          for (var c = 0u; c < QDW; c++) {
            let s = q4ScaleOf(kw(scaleBase() + (h * p.cap + k) * QSW + c / 8u), c / 4u);
            let q = q4Codes(kw(b + c));
            let k0 = vec4f(q[0], q[1], q[2], q[3]) * s;
            let k1 = vec4f(q[4], q[5], q[6], q[7]) * s;
            for (var qv = 0u; qv < QH; qv++) { sacc[qv] += dot(k0, qs[qv * d4 + 2u * c]) + dot(k1, qs[qv * d4 + 2u * c + 1u]); }
          }
        } else if (F16) {
          // 8 halves per load.
          let b = (h * p.cap + k) * (D / 8u);
          for (var c = 0u; c < D / 8u; c++) {
            let w = kc[b + c];
            let k0 = vec4f(unpack2x16float(w.x), unpack2x16float(w.y));
            let k1 = vec4f(unpack2x16float(w.z), unpack2x16float(w.w));
            for (var qv = 0u; qv < QH; qv++) { sacc[qv] += dot(k0, qs[qv * d4 + 2u * c]) + dot(k1, qs[qv * d4 + 2u * c + 1u]); }
          }
        } else {
          let b = (h * p.cap + k) * d4;
          for (var c = 0u; c < d4; c++) {
            let kv = bitcast<vec4f>(kc[b + c]);
            for (var qv = 0u; qv < QH; qv++) { sacc[qv] += dot(kv, qs[qv * d4 + c]); }
          }
        }
      } else {
        let b = (p.rowBase + k - len) * p.stride + (p.hq + h) * d;
        // Q8 / Q4: the scales of this step key (ks) and of its value (vsc, for the V phase).
        var ks = array<f32, 4>();
        if (Q8 || Q4) {
          for (var j = 0u; j < QNB; j++) {
            ks[j] = stepScale(b, j);
            vsc[lid * 4u + j] = stepScale(b + p.hkv * d, j);
          }
        }
        for (var c = 0u; c < d4; c++) {
          var kv = vec4f(qkv[b + 4u * c], qkv[b + 4u * c + 1u], qkv[b + 4u * c + 2u], qkv[b + 4u * c + 3u]);
          if (F16) { kv = vec4f(rnd2(kv.xy), rnd2(kv.zw)); }
          if (Q8 || Q4) {
            let s = ks[select(0u, c / 8u, Q4)];
            kv = vec4f(quant(kv.x, s), quant(kv.y, s), quant(kv.z, s), quant(kv.w, s));
          }
          for (var qv = 0u; qv < QH; qv++) { sacc[qv] += dot(kv, qs[qv * d4 + c]); }
        }
      }
    }
    var ki = 0u;
    if (inTile) { ki = keyInfo(k, len, h); }
    for (var qv = 0u; qv < QH; qv++) {
      var v = NEG;
      if (inTile && qv < nq && visible(ki, (qb * QH + qv) / p.g)) { v = sacc[qv]; }
      sc[qv * TK + lid] = v;
    }
    workgroupBarrier();
    if (lid < nq) {
      var tmax = NEG;
      for (var i = 0u; i < TK; i++) { tmax = max(tmax, sc[lid * TK + i]); }
      let mo = mrow[lid];
      let mn = max(mo, tmax);
      corr[lid] = exp(mo - mn);
      mrow[lid] = mn;
    }
    workgroupBarrier();
    for (var e = lid; e < QH * TK; e += WG) {
      let v = sc[e];
      var pr = 0.0;
      if (v > NEG * 0.5) { pr = exp(v - mrow[e / TK]); }
      sc[e] = pr;
    }
    workgroupBarrier();
    if (lid < nq) {
      var sum = 0.0;
      for (var i = 0u; i < TK; i++) { sum += sc[lid * TK + i]; }
      lrow[lid] = lrow[lid] * corr[lid] + sum;
    }
    // Each thread owns the column pair cp of the query vectors qv0 + j * QG: V is read once per tile
    // and thread group.
    let ntile = min(TK, kEnd - kt);
    if (qv0 < QG) {
      for (var j = 0u; j < NJ; j++) {
        let qv = min(qv0 + j * QG, MAXQH - 1u);
        acc[2u * j] *= corr[qv];
        acc[2u * j + 1u] *= corr[qv];
      }
      // Eight keys at a time so their V loads are in flight together; eight resident slots (the common
      // case) take a path without branches.
      for (var i = 0u; i < ntile; i += 8u) {
        var v: array<vec2f, 8>;
        if (i + 7u < ntile && kt + i + 7u < len) {
          for (var e = 0u; e < 8u; e++) { v[e] = cachedV(kt + i + e, h, cp); }
        } else {
          for (var e = 0u; e < 8u; e++) { if (i + e < ntile) { v[e] = loadV(kt + i + e, len, h, cp); } }
        }
        for (var q4 = 0u; q4 < 2u; q4++) {
          let vx = vec4f(v[4u * q4].x, v[4u * q4 + 1u].x, v[4u * q4 + 2u].x, v[4u * q4 + 3u].x);
          let vy = vec4f(v[4u * q4].y, v[4u * q4 + 1u].y, v[4u * q4 + 2u].y, v[4u * q4 + 3u].y);
          for (var j = 0u; j < NJ; j++) {
            let qv = qv0 + j * QG;
            if (qv < QH) {
              let o = qv * TK + i + 4u * q4;
              let pr = vec4f(sc[o], sc[o + 1u], sc[o + 2u], sc[o + 3u]);
              acc[2u * j] += dot(pr, vx);
              acc[2u * j + 1u] += dot(pr, vy);
            }
          }
        }
      }
    }
    workgroupBarrier();
  }

  if (qv0 >= QG) { return; }
  for (var j = 0u; j < NJ; j++) {
    let qv = qv0 + j * QG;
    if (qv >= nq) { continue; }
    let a = vec2f(acc[2u * j], acc[2u * j + 1u]);
    let gq = qb * QH + qv;
    let r = gq / p.g;
    let head = h * p.g + gq % p.g;
    let c = 2u * cp;
    if (p.nsplit == 1u) {
      let o = (p.rowBase + r) * p.hq * d + head * d + c;
      let l = lrow[qv];
      out[o] = a.x / l;
      out[o + 1u] = a.y / l;
      if (cp == 0u && p.stats == 1u) {
        part[p.statOff + (r * p.hq + head) * 2u] = mrow[qv];
        part[p.statOff + (r * p.hq + head) * 2u + 1u] = l;
      }
    } else {
      let idx = (r * p.hq + head) * p.nsplit + s;
      part[idx * d + c] = a.x;
      part[idx * d + c + 1u] = a.y;
      if (cp == 0u) {
        part[p.mlOff + idx * 2u] = mrow[qv];
        part[p.mlOff + idx * 2u + 1u] = lrow[qv];
      }
    }
  }
}
