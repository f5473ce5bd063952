// f16 helpers shared by the kernels that read the KV cache in f16 (attention.wgsl, attention_decode.wgsl,
// kv_score.wgsl) and the one that writes it (kv_commit.wgsl), which include it (worker/gpu/wgsl.ts).
const F16_MAX: f32 = 65504.0;

// x rounded to the nearest f16 (ties to even; clamped to ±65504), as kv_commit.wgsl stores it. Not
// unpack2x16float(pack2x16float(x)): Mesa folds that round trip in registers into x.
// Branch-free, so the loads around it stay in flight together.
fn rnd(x: f32) -> f32 {
  let a = clamp(x, -F16_MAX, F16_MAX);
  let u = bitcast<u32>(a);
  let normal = bitcast<f32>((u + 0xfffu + ((u >> 13u) & 1u)) & 0xffffe000u); // 10 mantissa bits, ties to even
  let sub = round(a * 16777216.0) * 5.9604644775390625e-08; // f16 subnormals: multiples of 2^-24
  return select(normal, sub, abs(a) < 6.103515625e-05);
}
fn rnd2(a: vec2f) -> vec2f { return vec2f(rnd(a.x), rnd(a.y)); }
