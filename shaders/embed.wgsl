// Embedding gather for one part of a table: out[t][c] = table[ids[t]][c] for the tokens whose id lies in
// rows row_start .. row_start + rows of this part (the other parts write the rest). Specialized by
// worker/kernels/embed.ts: exactly one of F32, F16, Q8, Q4 is kept; QUANT for Q8/Q4 (scales binding).
// Workgroup g handles token g / chunks, columns 256 * (g % chunks) ..
struct Params { rows: u32, cols: u32, row_start: u32, chunks: u32, count: u32 }
@group(0) @binding(0) var<uniform> p: Params;
// #if F32
@group(0) @binding(1) var<storage, read> w: array<f32>;
// #else
@group(0) @binding(1) var<storage, read> w: array<u32>;
// #endif
// #if QUANT
@group(0) @binding(2) var<storage, read> scales: array<u32>;
// #include weight_scales.wgsl
@group(0) @binding(3) var<storage, read> ids: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
// #else
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// #endif

fn value(r: u32, c: u32) -> f32 {
// #if F32
  return w[r * p.cols + c];
// #endif
// #if F16
  let h = unpack2x16float(w[r * ((p.cols + 1u) / 2u) + c / 2u]);
  return select(h.x, h.y, (c & 1u) == 1u);
// #endif
// #if Q8
  let c32 = (p.cols + 31u) / 32u;
  let q = bitcast<i32>(w[r * c32 * 8u + c / 4u] << (24u - 8u * (c % 4u))) >> 24u;
  return f32(q) * weightScale(r, c / 32u, c32);
// #endif
// #if Q4
  let c32 = (p.cols + 31u) / 32u;
  let q = (w[r * c32 * 4u + c / 8u] >> (4u * (c % 8u))) & 15u;
  return (f32(q) - 8.0) * weightScale(r, c / 32u, c32);
// #endif
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let g = wid.x + wid.y * nwg.x;
  if (g >= p.count) { return; }
  let t = g / p.chunks;
  let c = (g % p.chunks) * 256u + lid;
  let id = ids[t];
  if (id < p.row_start || id - p.row_start >= p.rows || c >= p.cols) { return; }
  out[t * p.cols + c] = value(id - p.row_start, c);
}
