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
// Four int8 codes of a q8 word, and eight 4-bit codes (stored + 8) of a q4 word, as numbers.
fn q8Codes(w: u32) -> vec4f {
  let i = bitcast<i32>(w);
  return vec4f(f32(extractBits(i, 0u, 8u)), f32(extractBits(i, 8u, 8u)), f32(extractBits(i, 16u, 8u)), f32(extractBits(i, 24u, 8u)));
}
fn q4Codes(w: u32) -> array<f32, 8> {
  return array<f32, 8>(f32(w & 15u) - 8.0, f32((w >> 4u) & 15u) - 8.0, f32((w >> 8u) & 15u) - 8.0, f32((w >> 12u) & 15u) - 8.0,
    f32((w >> 16u) & 15u) - 8.0, f32((w >> 20u) & 15u) - 8.0, f32((w >> 24u) & 15u) - 8.0, f32(w >> 28u) - 8.0);
}
// Scale `b` of a q4 scale word (two f16, block 2i in the low half).
fn q4ScaleOf(w: u32, b: u32) -> f32 { return unpack2x16float(w)[b & 1u]; }
