// y[t][row_start + r] = sum_c x[t][c] * w[r][c] (+ bias[row_start + r]) for one part of an f32 matrix.
// Specialized by worker/kernels/linear.ts: constants R (rows per workgroup), TT (tokens per workgroup),
// L (lanes = workgroup size) are prepended, `// #if NAME` blocks kept or dropped (SUBGROUPS, ALIGNED).
// A workgroup computes an R x TT tile of y: every lane walks units of 8 columns (u = lid, lid + L, ...),
// loads the 8 x values of each of its TT tokens once and each weight unit once, and accumulates R*TT
// partial sums, which are then reduced across the L lanes. ALIGNED (cols % 8 == 0): vec4 loads.
struct Params {
  rows: u32, cols: u32, tokens: u32, y_stride: u32,
  row_start: u32, nunits: u32, row_blocks: u32, count: u32,
  has_bias: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
// #if ALIGNED
@group(0) @binding(1) var<storage, read> w: array<vec4f>;
@group(0) @binding(2) var<storage, read> x: array<vec4f>;
// #else
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
// #endif
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
// Unused (a 16-byte placeholder) when has_bias is 0.
@group(0) @binding(4) var<storage, read> bias: array<f32>;


// #if ALIGNED
fn load_w(r: u32, u: u32) -> mat2x4f {
  let i = r * (p.cols / 4u) + 2u * u;
  return mat2x4f(w[i], w[i + 1u]);
}
fn load_x(t: u32, u: u32) -> mat2x4f {
  let i = t * (p.cols / 4u) + 2u * u;
  return mat2x4f(x[i], x[i + 1u]);
}
// #else
fn load_w1(r: u32, c: u32) -> f32 { return w[r * p.cols + c]; }
// #endif

// The workgroup tile, the reduction and the store: shaders/linear_tiled.wgsl, appended by
// worker/kernels/linear.ts (the same for every format; this file only says how to load).
