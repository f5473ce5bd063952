// SwiGLU activation: out[r][j] = silu(gateUp[r][j]) * gateUp[r][F + j], silu(g) = g / (1 + exp(-g)).
struct Params { rows: u32, F: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gateUp: array<f32>;
@group(0) @binding(2) var<storage, read_write> outp: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * 256u + lid;
  if (i >= p.rows * p.F) { return; }
  let r = i / p.F;
  let j = i - r * p.F;
  let g = gateUp[r * 2u * p.F + j];
  let u = gateUp[r * 2u * p.F + p.F + j];
  // For g << 0, exp(-g) overflows to +inf and g / inf = -0: the limit, without NaN.
  outp[i] = g / (1.0 + exp(-g)) * u;
}
