// y[t][row_start + r] = sum_c x[t][c] * w[r][c] (+ bias[row_start + r]) for one part of a q8 matrix:
// int8 codes packed 4 per u32, groups of 32 columns (rows padded to cols32) with an f16 scale each, w = q * scale.
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
@group(0) @binding(2) var<storage, read> scales: array<u32>;
// #include weight_scales.wgsl
// #if ALIGNED
@group(0) @binding(3) var<storage, read> x: array<vec4f>;
// #else
@group(0) @binding(3) var<storage, read> x: array<f32>;
// #endif
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
// Unused (a 16-byte placeholder) when has_bias is 0.
@group(0) @binding(5) var<storage, read> bias: array<f32>;


// A unit of 8 columns is one vec2u of a row of cols32/8; its group (scale) is unit / 4.
// The padding holds zero codes, so only x needs masking when cols % 8 != 0.
fn int8x4(v: u32) -> vec4f {
  return vec4f(bitcast<vec4i>(vec4u(v) << vec4u(24u, 16u, 8u, 0u)) >> vec4u(24u));
}
fn load_w(r: u32, u: u32) -> mat2x4f {
  let c32 = (p.cols + 31u) / 32u;
  let v = w[r * c32 * 4u + u];
  let s = weightScale(r, u / 4u, c32);
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
  return f32(bitcast<i32>(word << (24u - 8u * (c % 4u))) >> 24u) * weightScale(r, c / 32u, c32);
}
// #endif

// The workgroup tile, the reduction and the store: shaders/linear_tiled.wgsl, appended by
// worker/kernels/linear.ts (the same for every format; this file only says how to load).
