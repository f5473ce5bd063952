// The q8 / q4 K/V formats (worker/kv/quant.ts has the layouts and the CPU twin), shared by the kernel that
// writes the cache (kv_commit.wgsl) and the ones that read the step's own keys and values from qkv and
// round them as they will be stored (attention.wgsl, attention_decode.wgsl, kv_score.wgsl). Needs rnd()
// (f16_round.wgsl, included before this piece).
// q8: s = max|x| / 127, code = round(x / s) clamped to ±127. q4 (q4_0): m = the value of largest
// magnitude, s = f16(m / -8), code = round(x / s) clamped to [-8, 7]. Value = code * s; s = 0 stores 0.
fn q8Scale(amax: f32) -> f32 { return amax / 127.0; }
fn q4Scale(m: f32) -> f32 { return rnd(m / -8.0); }
fn q8Code(x: f32, s: f32) -> i32 { return select(0, i32(clamp(round(x / s), -127.0, 127.0)), s != 0.0); }
fn q4Code(x: f32, s: f32) -> i32 { return select(0, i32(clamp(round(x / s), -8.0, 7.0)), s != 0.0); }
fn q8Round(x: f32, s: f32) -> f32 { return f32(q8Code(x, s)) * s; }
fn q4Round(x: f32, s: f32) -> f32 { return f32(q4Code(x, s)) * s; }
// (m, |m|) running over a block: the value of largest magnitude, the first of equals.
fn q4Max(acc: vec2f, x: f32) -> vec2f { return select(acc, vec2f(x, abs(x)), abs(x) > acc.y); }
// Four int8 codes of a q8 word, and eight 4-bit codes (stored + 8) of a q4 word, as numbers. Integer-to-
// float conversion is slow on some GPUs (NVIDIA): a code u < 2^23 or'ed into the mantissa of 2^23 is the
// float 2^23 + u exactly, so one or and one subtract make it a float (q8 first flips the sign bits: + 128).
const MAGIC: u32 = 0x4B000000u;
fn q8Codes(w: u32) -> vec4f {
  let u = (vec4u(w ^ 0x80808080u) >> vec4u(0u, 8u, 16u, 24u)) & vec4u(255u);
  return bitcast<vec4f>(u | vec4u(MAGIC)) - 8388736.0;
}
fn q4Codes(w: u32) -> array<f32, 8> {
  let lo = bitcast<vec4f>(((vec4u(w) >> vec4u(0u, 4u, 8u, 12u)) & vec4u(15u)) | vec4u(MAGIC)) - 8388616.0;
  let hi = bitcast<vec4f>(((vec4u(w) >> vec4u(16u, 20u, 24u, 28u)) & vec4u(15u)) | vec4u(MAGIC)) - 8388616.0;
  return array<f32, 8>(lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w);
}
// Scale `b` of a q4 scale word (two f16, block 2i in the low half).
fn q4ScaleOf(w: u32, b: u32) -> f32 { return unpack2x16float(w)[b & 1u]; }
