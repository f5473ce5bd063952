// Attention weights as eviction scores (policies 'tova' and 'h2o'), after attention.wgsl of a step.
// One thread per key k of KV head h: keys are the resident slots [0, len) then the step's keys (as in
// attention.wgsl). For each query row r in [rowStart, T) that sees k, and each of the g query heads of
// the group: weight = exp(q.k / sqrt(d) - M) / L with (M, L) at statOff + (r * hq + head) * 2.
// score(k) = sum over those rows of the mean over the g heads. (M, L) and dest live in the cache's scratch
// buffer (worker/kv/layout.ts), read and written here as u32 words.
//   accumulate = 1 (h2o): resident scores += score; accumulate = 0 (tova): resident scores = score.
// Step keys get their score in dest[hkv * maxStep + h * maxStep + r'] (f32 bits, dest at destOff); kv_commit.wgsl moves
// it into the slot the token receives.
// Storage (pipeline constant F16, as attention.wgsl): cached keys f32, or two halves per u32; bound as
// vec4u. With F16 the step's keys are rounded to f16 like the ones attention used. Q8 / Q4: codes then
// scales (worker/kv/quant.ts); the step's keys are quantized and back (kv_quant.wgsl).
// struct Params: declared once as PARAMS in worker/kernels/kv-score.ts, which puts it before this source.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> kc: array<vec4u>;
@group(0) @binding(3) var<storage, read_write> state: array<u32>;
@group(0) @binding(4) var<storage, read_write> scratch: array<u32>;

override F16: bool = false;
override Q8: bool = false;
override Q4: bool = false;

// rnd(), rnd2() and F16_MAX; q8Round() ...:
// #include f16_round.wgsl
// #include kv_quant.wgsl

// Word i of the cache's K buffer.
fn kw(i: u32) -> u32 { return kc[i / 4u][i % 4u]; }

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let wgi = wid.x + wid.y * nwg.x;
  let h = wgi / p.tiles;
  if (h >= p.hkv) { return; }
  let len = state[h];
  let k = (wgi % p.tiles) * 64u + lid;
  if (k >= len + p.T) { return; }
  var key: array<vec4f, 32>;
  // Q8 / Q4: the key's scale (q8), or the base of its scale words (q4); for a step key, its scale.
  var s8 = 0.0;
  let sb = p.hkv * p.cap * p.d / select(8u, 4u, Q8);
  let kb = (p.rowBase + k - len) * p.stride + (p.hq + h) * p.d;
  if (Q8) {
    if (k < len) { s8 = bitcast<f32>(kw(sb + h * p.cap + k)); } else {
      var amax = 0.0;
      for (var c = 0u; c < p.d; c++) { amax = max(amax, abs(qkv[kb + c])); }
      s8 = q8Scale(amax);
    }
  }
  for (var c = 0u; c < p.d; c += 4u) {
    if (Q8) {
      if (k < len) {
        key[c / 4u] = q8Codes(kw((h * p.cap + k) * (p.d / 4u) + c / 4u)) * s8;
      } else {
        key[c / 4u] = vec4f(q8Round(qkv[kb + c], s8), q8Round(qkv[kb + c + 1u], s8), q8Round(qkv[kb + c + 2u], s8), q8Round(qkv[kb + c + 3u], s8));
      }
    } else if (Q4) {
      var s4 = 0.0;
      if (k < len) {
        s4 = q4ScaleOf(kw(sb + (h * p.cap + k) * ((p.d + 63u) / 64u) + c / 64u), c / 32u);
        var q = q4Codes(kw((h * p.cap + k) * (p.d / 8u) + c / 8u));
        let o = c % 8u;
        key[c / 4u] = vec4f(q[o], q[o + 1u], q[o + 2u], q[o + 3u]) * s4;
      } else {
        var m = vec2f(0.0);
        for (var i = 0u; i < 32u; i++) { m = q4Max(m, qkv[kb + (c / 32u) * 32u + i]); }
        s4 = q4Scale(m.x);
        key[c / 4u] = vec4f(q4Round(qkv[kb + c], s4), q4Round(qkv[kb + c + 1u], s4), q4Round(qkv[kb + c + 2u], s4), q4Round(qkv[kb + c + 3u], s4));
      }
    } else if (k < len) {
      if (F16) {
        let w = kc[((h * p.cap + k) * p.d + c) / 8u];
        if (c % 8u == 0u) {
          key[c / 4u] = vec4f(unpack2x16float(w.x), unpack2x16float(w.y));
        } else {
          key[c / 4u] = vec4f(unpack2x16float(w.z), unpack2x16float(w.w));
        }
      } else {
        key[c / 4u] = bitcast<vec4f>(kc[((h * p.cap + k) * p.d + c) / 4u]);
      }
    } else {
      let b = (p.rowBase + k - len) * p.stride + (p.hq + h) * p.d + c;
      key[c / 4u] = vec4f(qkv[b], qkv[b + 1u], qkv[b + 2u], qkv[b + 3u]);
      if (F16) { key[c / 4u] = vec4f(rnd2(key[c / 4u].xy), rnd2(key[c / 4u].zw)); }
    }
  }
  var r0 = p.rowStart;
  if (k >= len) { r0 = max(r0, k - len); }
  var acc = 0.0;
  for (var r = r0; r < p.T; r++) {
    for (var hh = 0u; hh < p.g; hh++) {
      let head = h * p.g + hh;
      let qo = (p.rowBase + r) * p.stride + head * p.d;
      var dotv = 0.0;
      for (var c = 0u; c < p.d; c += 4u) {
        dotv += dot(key[c / 4u], vec4f(qkv[qo + c], qkv[qo + c + 1u], qkv[qo + c + 2u], qkv[qo + c + 3u]));
      }
      let so = p.statOff + (r * p.hq + head) * 2u;
      acc += exp(dotv * p.scale - bitcast<f32>(scratch[so])) / bitcast<f32>(scratch[so + 1u]);
    }
  }
  let w = acc / f32(p.g);
  if (k < len) {
    let i = p.scoreOff + h * p.cap + k;
    var v = w;
    if (p.accumulate == 1u) { v += bitcast<f32>(state[i]); }
    state[i] = bitcast<u32>(v);
  } else {
    scratch[p.destOff + p.hkv * p.maxStep + h * p.maxStep + k - len] = bitcast<u32>(w);
  }
}
