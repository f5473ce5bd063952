// Samples one token id from one row of logits with a single workgroup (no sort, no readback but the id).
//   greedy: the argmax, lowest index on ties.
//   else:   p_i = exp((l_i - max) / temperature), over the kept tokens {i : key(l_i) >= t}, where key is the
//           order-preserving u32 of the f32 logit (-0 = +0) and t = max(tK, tP):
//             tK = the topK-th largest key (0 without a top-k limit): ties with it are all kept,
//             tP = the largest key with  sum_{key_i >= tP, key_i >= tK} p_i >= topP * sum_{key_i >= tK} p_i  and > 0
//                  (tK without a top-p limit): the smallest set of highest logits holding topP of the mass,
//                  ties with its lowest logit all kept.
//           Both are found by 4-bit radix select: 8 passes, each a 16-bin histogram (counts or masses) of
//           the keys that share the digits chosen so far.
//           Then the token is the first kept i (in index order) whose cumulative mass exceeds u * total.
// #if SUBGROUPS
enable subgroups;
// #endif
struct Params { offset: u32, vocab: u32, outIndex: u32, topK: u32, temperature: f32, topP: f32, u: f32, greedy: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> outp: array<u32>;

const WG = 256u;
const BINS = 16u;
var<workgroup> redF: array<f32, 4096>; // BINS * WG
var<workgroup> redK: array<u32, WG>;
// #if SUBGROUPS
// Per-subgroup bin partials (subgroups of at least 4 invocations), the last BINS entries for the totals.
const PARTS = BINS * WG / 4u + BINS;
var<workgroup> part: array<f32, PARTS>;
// #endif
var<workgroup> redI: array<u32, WG>;
var<workgroup> found: atomic<u32>;
var<workgroup> lastKept: atomic<u32>;

var<private> lid: u32;
// #if SUBGROUPS
var<private> sgi: u32;
var<private> sgs: u32;
// #endif

fn orderKey(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  if (b == 0x80000000u) { return 0x80000000u; }
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn better(k2: u32, i2: u32, k1: u32, i1: u32) -> bool {
  return k2 > k1 || (k2 == k1 && i2 < i1);
}

// (key, index) of the largest logit, lowest index on ties.
fn argmax() -> vec2u {
  var bk = 0u;
  var bi = 0xffffffffu;
  for (var i = lid; i < p.vocab; i += WG) {
    let k = orderKey(logits[p.offset + i]);
    if (better(k, i, bk, bi)) { bk = k; bi = i; }
  }
// #if SUBGROUPS
  let mk = subgroupMax(bk);
  let mi = subgroupMin(select(0xffffffffu, bi, bk == mk));
  if (sgi == 0u) { redK[lid / sgs] = mk; redI[lid / sgs] = mi; }
  workgroupBarrier();
  bk = 0u;
  bi = 0xffffffffu;
  for (var s = 0u; s < (WG + sgs - 1u) / sgs; s++) {
    if (better(redK[s], redI[s], bk, bi)) { bk = redK[s]; bi = redI[s]; }
  }
// #else
  redK[lid] = bk;
  redI[lid] = bi;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s && better(redK[lid + s], redI[lid + s], redK[lid], redI[lid])) {
      redK[lid] = redK[lid + s];
      redI[lid] = redI[lid + s];
    }
    workgroupBarrier();
  }
  bk = redK[0];
  bi = redI[0];
// #endif
  workgroupBarrier();
  return vec2u(bk, bi);
}

// The sum of v over the workgroup, in the same order for every invocation.
fn wgSum(v: f32) -> f32 {
// #if SUBGROUPS
  let s = subgroupAdd(v);
  if (sgi == 0u) { redF[lid / sgs] = s; }
  workgroupBarrier();
  var t = 0.0;
  for (var k = 0u; k < (WG + sgs - 1u) / sgs; k++) { t += redF[k]; }
// #else
  redF[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { redF[lid] += redF[lid + s]; }
    workgroupBarrier();
  }
  let t = redF[0];
// #endif
  workgroupBarrier();
  return t;
}

// Exclusive prefix sum of v over invocations in index order; .y is the total.
fn wgScan(v: f32) -> vec2f {
// #if SUBGROUPS
  let e = subgroupExclusiveAdd(v);
  let s = subgroupAdd(v);
  if (sgi == 0u) { redF[lid / sgs] = s; }
  workgroupBarrier();
  var before = 0.0;
  var total = 0.0;
  for (var k = 0u; k < (WG + sgs - 1u) / sgs; k++) {
    if (k == lid / sgs) { before = total; }
    total += redF[k];
  }
  workgroupBarrier();
  return vec2f(before + e, total);
// #else
  redF[lid] = v;
  workgroupBarrier();
  for (var off = 1u; off < WG; off <<= 1u) {
    var add = 0.0;
    if (lid >= off) { add = redF[lid - off]; }
    workgroupBarrier();
    redF[lid] += add;
    workgroupBarrier();
  }
  var before = 0.0;
  if (lid > 0u) { before = redF[lid - 1u]; }
  let total = redF[WG - 1u];
  workgroupBarrier();
  return vec2f(before, total);
// #endif
}

// Per-bin sums over the workgroup of the per-invocation bins redF[d * WG + lid].
fn reduceBins() -> array<f32, BINS> {
  var out: array<f32, BINS>;
  workgroupBarrier();
// #if SUBGROUPS
  for (var d = 0u; d < BINS; d++) {
    let s = subgroupAdd(redF[d * WG + lid]);
    if (sgi == 0u) { part[(lid / sgs) * BINS + d] = s; }
  }
  workgroupBarrier();
  if (lid < BINS) {
    var t = 0.0;
    for (var k = 0u; k < (WG + sgs - 1u) / sgs; k++) { t += part[k * BINS + lid]; }
    part[PARTS - BINS + lid] = t;
  }
  workgroupBarrier();
  for (var d = 0u; d < BINS; d++) { out[d] = part[PARTS - BINS + d]; }
// #else
  // Tree over the WG slots of all bins at once: at stride s, BINS * s additions spread over the invocations.
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    for (var j = lid; j < BINS * s; j += WG) {
      let d = j / s;
      let k = j - d * s;
      redF[d * WG + k] += redF[d * WG + k + s];
    }
    workgroupBarrier();
  }
  for (var d = 0u; d < BINS; d++) { out[d] = redF[d * WG]; }
// #endif
  workgroupBarrier();
  return out;
}

fn prob(x: f32, m: f32) -> f32 {
  return exp((x - m) / p.temperature);
}

// The largest key t with  W(t) = sum_{key_i >= t, key_i >= lower} w_i >= goal  and  W(t) > 0, where w_i is 1
// (count) or prob (mass). Digit 0 is taken when no higher digit qualifies, so an unreachable goal keeps all.
fn radixSelect(mass: bool, goal: f32, lower: u32, m: f32) -> u32 {
  var prefix = 0u;
  var above = 0.0;
  for (var level = 0u; level < 8u; level++) {
    let shift = 28u - 4u * level;
    let hiMask = ~((16u << shift) - 1u);
    // Invocation lid's bins live in the column redF[d * WG + lid].
    for (var d = 0u; d < BINS; d++) { redF[d * WG + lid] = 0.0; }
    for (var i = lid; i < p.vocab; i += WG) {
      let x = logits[p.offset + i];
      let k = orderKey(x);
      if (k >= lower && (k & hiMask) == (prefix & hiMask)) {
        var w = 1.0;
        if (mass) { w = prob(x, m); }
        let d = (k >> shift) & 15u;
        redF[d * WG + lid] += w;
      }
    }
    let tot = reduceBins();
    var chosen = 0u;
    for (var d = 15u; d > 0u; d--) {
      let s = above + tot[d];
      if (s >= goal && s > 0.0) { chosen = d; break; }
      above = s;
    }
    prefix |= chosen << shift;
  }
  return prefix;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) li: u32,
// #if SUBGROUPS
        @builtin(subgroup_invocation_id) sg_i: u32, @builtin(subgroup_size) sg_s: u32,
// #endif
) {
  lid = li;
// #if SUBGROUPS
  sgi = sg_i;
  sgs = sg_s;
// #endif
  if (lid == 0u) {
    atomicStore(&found, 0xffffffffu);
    atomicStore(&lastKept, 0u);
  }
  let best = argmax();
  if (p.greedy != 0u) {
    if (lid == 0u) { outp[p.outIndex] = best.y; }
    return;
  }
  let m = logits[p.offset + best.y];

  // Phase 0: the top-k threshold by counts; phase 1: the top-p threshold by mass among the top-k survivors.
  // (One call site of radixSelect keeps the shader small to compile.)
  var t = 0u;
  for (var phase = 0u; phase < 2u; phase++) {
    let topK = phase == 0u;
    if ((topK && p.topK > 0u && p.topK < p.vocab) || (!topK && p.topP < 1.0)) {
      var goal = f32(p.topK);
      if (!topK) {
        var massK = 0.0;
        for (var i = lid; i < p.vocab; i += WG) {
          let x = logits[p.offset + i];
          if (orderKey(x) >= t) { massK += prob(x, m); }
        }
        goal = max(p.topP, 0.0) * wgSum(massK);
      }
      t = max(t, radixSelect(!topK, goal, t, m));
    }
  }

  // Each invocation owns a contiguous chunk of the vocabulary: chunk sums, their exclusive scan, then the
  // invocation whose chunk holds the crossing walks it.
  let chunk = (p.vocab + WG - 1u) / WG;
  let start = min(lid * chunk, p.vocab);
  let end = min(start + chunk, p.vocab);
  var s = 0.0;
  var last = 0u;
  for (var i = start; i < end; i++) {
    let x = logits[p.offset + i];
    if (orderKey(x) >= t) {
      let w = prob(x, m);
      s += w;
      if (w > 0.0) { last = i + 1u; }
    }
  }
  // The last kept token with mass, for when rounding leaves u * total at or above every cumulative sum.
  atomicMax(&lastKept, last);
  let scan = wgScan(s);
  let goal = p.u * scan.y;
  // Every chunk at or after the crossing walks (those after it stop at their first token with mass), so a
  // crossing that rounding pushes over a chunk boundary is still found; the lowest index wins.
  if (scan.x + s > goal) {
    var cum = scan.x;
    for (var i = start; i < end; i++) {
      let x = logits[p.offset + i];
      if (orderKey(x) >= t) {
        let w = prob(x, m);
        if (w > 0.0) {
          cum += w;
          if (cum > goal) { atomicMin(&found, i); break; }
        }
      }
    }
  }
  workgroupBarrier();
  if (lid == 0u) {
    let f = atomicLoad(&found);
    outp[p.outIndex] = select(atomicLoad(&lastKept) - 1u, f, f != 0xffffffffu);
  }
}
