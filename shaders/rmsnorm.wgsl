// RMSNorm as in Hugging Face Llama/Qwen, in f32: y[r][c] = x[r][c] * inverseSqrt(mean_c(x[r]^2) + eps) * w[c].
// One workgroup per row (linear workgroup index wid.x + wid.y * nwg.x, see Encoder.grid).
// #if SUBGROUPS
enable subgroups;
// #endif
struct Params { rows: u32, cols: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

const WG = 256u;

// #include workgroup_sum.wgsl

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32,
// #if SUBGROUPS
        @builtin(subgroup_invocation_id) sgi: u32, @builtin(subgroup_size) sgs: u32,
// #endif
) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) { return; }
  let base = row * p.cols;
  var ss = 0.0;
  for (var c = lid; c < p.cols; c += WG) {
    let v = x[base + c];
    ss += v * v;
  }
// #if SUBGROUPS
  let total = workgroupSum(ss, lid, sgi, sgs);
// #else
  let total = workgroupSum(ss, lid);
// #endif
  let r = inverseSqrt(total / f32(p.cols) + p.eps);
  for (var c = lid; c < p.cols; c += WG) {
    y[base + c] = x[base + c] * r * w[c];
  }
}
