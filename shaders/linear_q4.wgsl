// y[t][row_start + r] = sum_c x[t][c] * w[r][c] (+ bias[row_start + r]) for one part of a q4 matrix:
// 4-bit codes packed 8 per u32 (element c in bits 4*(c%8)), groups of 32 columns with an f16 scale, w = (q - 8) * scale.
// Specialized by worker/kernels/linear.ts: constants R (rows per workgroup), TT (tokens per workgroup),
// L (lanes = workgroup size) are prepended, `// #if NAME` blocks kept or dropped (SUBGROUPS, ALIGNED).
// Same tiling and reduction as linear_f32.wgsl: lanes walk units of 8 columns, R*TT partial sums per lane.
struct Params {
  rows: u32, cols: u32, tokens: u32, y_stride: u32,
  row_start: u32, nunits: u32, row_blocks: u32, count: u32,
  has_bias: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
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


// A unit of 8 columns is one u32 of a row of cols32/8; its group (scale) is unit / 4.
// The padding holds code 8 (zero), so only x needs masking when cols % 8 != 0.
fn load_w(r: u32, u: u32) -> mat2x4f {
  let c32 = (p.cols + 31u) / 32u;
  let v = w[r * c32 * 4u + u];
  let s = weightScale(r, u / 4u, c32);
  let lo = vec4f((vec4u(v) >> vec4u(0u, 4u, 8u, 12u)) & vec4u(15u)) - 8.0;
  let hi = vec4f((vec4u(v) >> vec4u(16u, 20u, 24u, 28u)) & vec4u(15u)) - 8.0;
  return mat2x4f(lo * s, hi * s);
}
// #if ALIGNED
fn load_x(t: u32, u: u32) -> mat2x4f {
  let i = t * (p.cols / 4u) + 2u * u;
  return mat2x4f(x[i], x[i + 1u]);
}
// #else
fn load_w1(r: u32, c: u32) -> f32 {
  let c32 = (p.cols + 31u) / 32u;
  let q = (w[r * c32 * 4u + c / 8u] >> (4u * (c % 8u))) & 15u;
  return (f32(q) - 8.0) * weightScale(r, c / 32u, c32);
}
// #endif

// The workgroup tile, the reduction and the store: shaders/linear_tiled.wgsl, appended by
// worker/kernels/linear.ts (the same for every format; this file only says how to load).
