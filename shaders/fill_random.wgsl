// Fills a buffer with pseudo-random words (benchmark weights made on the GPU, no upload).
// mode 0: f32 uniform in [-scale, scale); 1: two such values packed as f16; 2: raw random bits
// (q8/q4 codes); 3: two f16 in [scale/2, scale) packed (quantization scales, worker/load/pack.ts).
struct Params { n: u32, mode: u32, seed: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;

fn hash(x: u32) -> u32 {
  var h = x * 747796405u + 2891336453u;
  h = ((h >> ((h >> 28u) + 4u)) ^ h) * 277803737u;
  return (h >> 22u) ^ h;
}

fn unit(x: u32) -> f32 { return f32(x >> 8u) / 16777216.0; }

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * 256u + lid;
  if (i >= p.n) { return; }
  let h = hash(i ^ hash(p.seed));
  switch p.mode {
    case 0u: { out[i] = bitcast<u32>((unit(h) * 2.0 - 1.0) * p.scale); }
    case 1u: { out[i] = pack2x16float(vec2f((unit(h) * 2.0 - 1.0) * p.scale, (unit(hash(h)) * 2.0 - 1.0) * p.scale)); }
    case 2u: { out[i] = h; }
    default: { out[i] = pack2x16float(vec2f(0.5 + 0.5 * unit(h), 0.5 + 0.5 * unit(hash(h))) * p.scale); }
  }
}
