// y[t][row_start + r] = sum_c x[t][c] * w[r][c] (+ bias[row_start + r]) for one part of an f16 matrix
// (pairs of halves packed in u32, unpacked with unpack2x16float: no shader-f16).
// Specialized by worker/kernels/linear.ts: constants R (rows per workgroup), TT (tokens per workgroup),
// L (lanes = workgroup size) are prepended, `// #if NAME` blocks kept or dropped (SUBGROUPS, ALIGNED).
// Same tiling and reduction as linear_f32.wgsl: lanes walk units of 8 columns, R*TT partial sums per lane.
struct Params {
  rows: u32, cols: u32, tokens: u32, y_stride: u32,
  row_start: u32, nunits: u32, row_blocks: u32, count: u32,
  has_bias: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
// #if ALIGNED
@group(0) @binding(1) var<storage, read> w: array<vec4u>;
// #else
@group(0) @binding(1) var<storage, read> w: array<u32>;
// #endif
// #if ALIGNED
@group(0) @binding(2) var<storage, read> x: array<vec4f>;
// #else
@group(0) @binding(2) var<storage, read> x: array<f32>;
// #endif
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
// Unused (a 16-byte placeholder) when has_bias is 0.
@group(0) @binding(4) var<storage, read> bias: array<f32>;


// #if ALIGNED
// cols % 8 == 0: a row is cols/8 vec4u, one per unit.
fn load_w(r: u32, u: u32) -> mat2x4f {
  let v = w[r * (p.cols / 8u) + u];
  return mat2x4f(vec4f(unpack2x16float(v.x), unpack2x16float(v.y)), vec4f(unpack2x16float(v.z), unpack2x16float(v.w)));
}
// #else
fn load_w1(r: u32, c: u32) -> f32 {
  let h = unpack2x16float(w[r * ((p.cols + 1u) / 2u) + c / 2u]);
  return select(h.x, h.y, (c & 1u) == 1u);
}
// #endif
// #if ALIGNED
fn load_x(t: u32, u: u32) -> mat2x4f {
  let i = t * (p.cols / 4u) + 2u * u;
  return mat2x4f(x[i], x[i + 1u]);
}
// #endif

// The workgroup tile, the reduction and the store: shaders/linear_tiled.wgsl, appended by
// worker/kernels/linear.ts (the same for every format; this file only says how to load).
