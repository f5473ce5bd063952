// Decode projection (one token, cols % 32 == 0) of one part of a matrix, with what surrounds it in a layer
// fused in, so that a decode layer is a handful of dispatches (worker/kernels/linear.ts, `project`):
//   y[row_start + r] (=, or += with ADD) epilogue( norm(x) · w[r] ) (+ bias[row_start + r])
//   NORM  x is RMS-normalised on the way in: x * inverseSqrt(mean(x^2) + eps) * nw (every workgroup reads
//         all of x anyway, so it sums the squares as it goes and scales its dot products at the end)
//   SILU  the matrix is [gate; up] stacked (p.rows output rows, gate row r and up row p.rows + r):
//         y[r] = silu(gate · x) * (up · x)
//   ADD   y[r] += the result (the residual stream is y)
// The format file prepended before this body (linear_mv_<format>.wgsl) declares GV (vec4<u32> words per
// 32-column group of a row) and dotGroup(): one row's group dotted with the group's 32 x values as prepX()
// prepared them once for all rows (q4/q8 also XSCALE and CODE_OFFSET, see prepX). Constants R (physical rows per workgroup: OUT output rows,
// and as many up rows with SILU), L (lanes) and KU (groups per lane step) are prepended by
// worker/kernels/linear.ts, which keeps or
// drops the `// #if` blocks SUBGROUPS, NORM, SILU, ADD, QUANT.
//
// Bandwidth-shaped: a lane takes one whole group of each of the workgroup's R rows per step, so weight
// loads are 16-byte words and lanes read consecutive groups; x (and nw) come from cache.
struct Params {
  rows: u32, cols: u32, row_start: u32, count: u32,
  has_bias: u32, eps: f32, _p0: u32, _p1: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<vec4u>;
// Bindings are numbered in the order the dispatcher passes the buffers (scales only for q4/q8).
// #if QUANT
@group(0) @binding(2) var<storage, read> scales: array<u32>;
// #include weight_scales.wgsl
@group(0) @binding(3) var<storage, read> x: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
// Unused (a 16-byte placeholder) when has_bias is 0.
@group(0) @binding(5) var<storage, read> bias: array<f32>;
// #if NORM
@group(0) @binding(6) var<storage, read> nw: array<vec4f>;
// #endif
// #else
@group(0) @binding(2) var<storage, read> x: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
// #if NORM
@group(0) @binding(5) var<storage, read> nw: array<vec4f>;
// #endif
// #endif

// #if QUANT
// q4/q8 unpack their codes as u * 2^-k (per column of a vec4: XSCALE undoes the power of two, applied to x
// once per group) and offset by CODE_OFFSET (q - 8, or the sign-flipped int8 + 128): the offset is taken out
// of the group's dot product as CODE_OFFSET * sum(x).
struct XPrep { xs: array<vec4f, 8>, offset: f32 }

fn prepX(xs: array<vec4f, 8>) -> XPrep {
  var o: XPrep;
  var sx = vec4f(0.0);
  for (var j = 0u; j < 8u; j++) {
    sx += xs[j];
    o.xs[j] = xs[j] * XSCALE;
  }
  o.offset = CODE_OFFSET * (sx.x + sx.y + sx.z + sx.w);
  return o;
}
// #else
struct XPrep { xs: array<vec4f, 8> }

fn prepX(xs: array<vec4f, 8>) -> XPrep { return XPrep(xs); }
// #endif

// #if SILU
const OUT: u32 = R / 2u;
// #else
const OUT: u32 = R;
// #endif
// #if NORM
const RED: u32 = R + 1u; // the R dot products and the sum of squares of x
// #else
const RED: u32 = R;
// #endif

// #if SUBGROUPS
var<workgroup> slots: atomic<u32>;
var<workgroup> red: array<f32, (L / 4u) * RED>;
// #else
var<workgroup> red: array<f32, L * RED>;
// #endif
var<workgroup> tot: array<f32, RED>;

@compute @workgroup_size(L)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32,
// #if SUBGROUPS
        @builtin(subgroup_invocation_id) sg_lane: u32,
// #endif
) {
  let g = wid.x + wid.y * nwg.x;
  if (g >= p.count) { return; }
  let r0 = g * OUT;
  let ng = p.cols / 32u;
  // The physical row of each of the R rows (with SILU, the up rows follow the gate rows).
  var prow: array<u32, R>;
  for (var r = 0u; r < OUT; r++) {
    let row = min(r0 + r, p.rows - 1u);
    prow[r] = row;
// #if SILU
    prow[OUT + r] = p.rows + row;
// #endif
  }

  var acc: array<f32, RED>;
  // KU groups per lane step, their loads issued together (lanes still read consecutive groups).
  for (var k0 = lid; k0 < ng; k0 += L * KU) {
    var wv: array<array<vec4u, GV>, R * KU>;
    var sc: array<f32, R * KU>;
    for (var u = 0u; u < KU; u++) {
      let k = min(k0 + u * L, ng - 1u);
      for (var r = 0u; r < R; r++) {
        for (var i = 0u; i < GV; i++) { wv[u * R + r][i] = w[(prow[r] * ng + k) * GV + i]; }
// #if QUANT
        sc[u * R + r] = weightScale(prow[r], k, ng);
// #else
        sc[u * R + r] = 1.0;
// #endif
      }
    }
    for (var u = 0u; u < KU; u++) {
      let k = k0 + u * L;
      if (k >= ng) { break; }
      var xs: array<vec4f, 8>;
      for (var j = 0u; j < 8u; j++) {
        var v = x[8u * k + j];
// #if NORM
        acc[R] = fma(v.x, v.x, fma(v.y, v.y, fma(v.z, v.z, fma(v.w, v.w, acc[R]))));
        v *= nw[8u * k + j];
// #endif
        xs[j] = v;
      }
      let xp = prepX(xs);
      for (var r = 0u; r < R; r++) { acc[r] += dotGroup(wv[u * R + r], sc[u * R + r], xp); }
    }
  }

// #if SUBGROUPS
  // Subgroup sums, then one slot per subgroup (claimed atomically: no assumption on how lanes map to subgroups).
  for (var o = 0u; o < RED; o++) { acc[o] = subgroupAdd(acc[o]); }
  if (sg_lane == 0u) {
    let slot = atomicAdd(&slots, 1u);
    for (var o = 0u; o < RED; o++) { red[slot * RED + o] = acc[o]; }
  }
  workgroupBarrier();
  let nslots = atomicLoad(&slots);
  if (lid < RED) {
    var s = 0.0;
    for (var k = 0u; k < nslots; k++) { s += red[k * RED + lid]; }
    tot[lid] = s;
  }
// #else
  for (var o = 0u; o < RED; o++) { red[o * L + lid] = acc[o]; }
  workgroupBarrier();
  for (var s = L / 2u; s > 0u; s >>= 1u) {
    for (var i = lid; i < RED * s; i += L) {
      let o = i / s;
      let j = i % s;
      red[o * L + j] += red[o * L + j + s];
    }
    workgroupBarrier();
  }
  if (lid < RED) { tot[lid] = red[lid * L]; }
// #endif
  workgroupBarrier();
  let r = r0 + lid;
  if (lid < OUT && r < p.rows) {
    var scale = 1.0;
// #if NORM
    scale = inverseSqrt(tot[R] / f32(p.cols) + p.eps);
// #endif
    var v = tot[lid] * scale;
// #if SILU
    // For v << 0, exp(-v) overflows to +inf and v / inf = -0: the limit, without NaN.
    v = v / (1.0 + exp(-v)) * (tot[OUT + lid] * scale);
// #endif
    if (p.has_bias != 0u) { v += bias[p.row_start + r]; }
// #if ADD
    y[p.row_start + r] += v;
// #else
    y[p.row_start + r] = v;
// #endif
  }
}
