// y[t][row_start + r] = sum_c x[t][c] * w[r][c] (+ bias[row_start + r]) for one part of a q8 matrix:
// int8 codes packed 4 per u32, groups of 32 columns (rows padded to cols32) with an f32 scale each, w = q * scale.
// Specialized by worker/kernels/linear.ts: constants R (rows per workgroup), TT (tokens per workgroup),
// L (lanes = workgroup size) are prepended, `// #if NAME` blocks kept or dropped (SUBGROUPS, ALIGNED).
// Same tiling and reduction as linear_f32.wgsl: lanes walk units of 8 columns, R*TT partial sums per lane.
struct Params {
  rows: u32, cols: u32, tokens: u32, y_stride: u32,
  row_start: u32, nunits: u32, row_blocks: u32, count: u32,
  has_bias: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<vec2u>;
@group(0) @binding(2) var<storage, read> scales: array<f32>;
// #if ALIGNED
@group(0) @binding(3) var<storage, read> x: array<vec4f>;
// #else
@group(0) @binding(3) var<storage, read> x: array<f32>;
// #endif
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
// Unused (a 16-byte placeholder) when has_bias is 0.
@group(0) @binding(5) var<storage, read> bias: array<f32>;

const RT = R * TT;

// A unit of 8 columns is one vec2u of a row of cols32/8; its group (scale) is unit / 4.
// The padding holds zero codes, so only x needs masking when cols % 8 != 0.
fn int8x4(v: u32) -> vec4f {
  return vec4f(bitcast<vec4i>(vec4u(v) << vec4u(24u, 16u, 8u, 0u)) >> vec4u(24u));
}
fn load_w(r: u32, u: u32) -> mat2x4f {
  let c32 = (p.cols + 31u) / 32u;
  let v = w[r * c32 * 4u + u];
  let s = scales[r * c32 + u / 4u];
  return mat2x4f(int8x4(v.x) * s, int8x4(v.y) * s);
}
// #if ALIGNED
fn load_x(t: u32, u: u32) -> mat2x4f {
  let i = t * (p.cols / 4u) + 2u * u;
  return mat2x4f(x[i], x[i + 1u]);
}
// #else
fn load_w1(r: u32, c: u32) -> f32 {
  let c32 = (p.cols + 31u) / 32u;
  let v = w[r * c32 * 4u + c / 8u];
  let word = select(v.x, v.y, (c & 4u) != 0u);
  return f32(bitcast<i32>(word << (24u - 8u * (c % 4u))) >> 24u) * scales[r * c32 + c / 32u];
}
// #endif

// #if SUBGROUPS
var<workgroup> slots: atomic<u32>;
var<workgroup> red: array<f32, (L / 4u) * RT>;
// #else
var<workgroup> red: array<f32, L * RT>;
// #endif

@compute @workgroup_size(L)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32,
// #if SUBGROUPS
        @builtin(subgroup_invocation_id) sg_lane: u32,
// #endif
) {
  let g = wid.x + wid.y * nwg.x;
  if (g >= p.count) { return; }
  let r0 = (g % p.row_blocks) * R;
  let t0 = (g / p.row_blocks) * TT;

  var acc: array<f32, RT>;
// #if ALIGNED
  for (var u = lid; u < p.nunits; u += L) {
    var ws: array<mat2x4f, R>;
    for (var r = 0u; r < R; r++) { ws[r] = load_w(min(r0 + r, p.rows - 1u), u); }
    for (var t = 0u; t < TT; t++) {
      let xv = load_x(min(t0 + t, p.tokens - 1u), u);
      for (var r = 0u; r < R; r++) { acc[r * TT + t] += dot(ws[r][0], xv[0]) + dot(ws[r][1], xv[1]); }
    }
  }
// #else
  // Odd cols: one column per lane step, scalar loads (still coalesced across lanes), nothing to mask.
  for (var c = lid; c < p.cols; c += L) {
    var ws: array<f32, R>;
    for (var r = 0u; r < R; r++) { ws[r] = load_w1(min(r0 + r, p.rows - 1u), c); }
    for (var t = 0u; t < TT; t++) {
      let xv = x[min(t0 + t, p.tokens - 1u) * p.cols + c];
      for (var r = 0u; r < R; r++) { acc[r * TT + t] += ws[r] * xv; }
    }
  }
// #endif

// #if SUBGROUPS
  // Subgroup sums, then one slot per subgroup (claimed atomically: no assumption on how lanes map to subgroups).
  for (var o = 0u; o < RT; o++) { acc[o] = subgroupAdd(acc[o]); }
  if (sg_lane == 0u) {
    let slot = atomicAdd(&slots, 1u);
    for (var o = 0u; o < RT; o++) { red[slot * RT + o] = acc[o]; }
  }
  workgroupBarrier();
  let nslots = atomicLoad(&slots);
  if (lid < RT) {
    var s = 0.0;
    for (var k = 0u; k < nslots; k++) { s += red[k * RT + lid]; }
// #else
  for (var o = 0u; o < RT; o++) { red[o * L + lid] = acc[o]; }
  workgroupBarrier();
  for (var s = L / 2u; s > 0u; s >>= 1u) {
    for (var i = lid; i < RT * s; i += L) {
      let o = i / s;
      let j = i % s;
      red[o * L + j] += red[o * L + j + s];
    }
    workgroupBarrier();
  }
  if (lid < RT) {
    let s = red[lid * L];
// #endif
    let r = r0 + lid / TT;
    let t = t0 + lid % TT;
    if (r < p.rows && t < p.tokens) {
      var v = s;
      if (p.has_bias != 0u) { v += bias[p.row_start + r]; }
      y[t * p.y_stride + p.row_start + r] = v;
    }
  }
}
