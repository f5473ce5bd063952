// q8 groups for linear_mv.wgsl: 32 int8 codes in two vec4<u32> (element c in byte c%4 of word c/4) and an
// f16 scale (unpacked to f32 by linear_mv.wgsl); w = q * scale.
// Unpacking without integer-to-float conversion: the sign bit is flipped (u = q + 128 in 0..255), then
// `(u & 0xFF << 8i) | 1.0f` - 1.0 is u * 2^(8i-23) exactly for bytes i = 0, 1 (bytes 2, 3 after a shift by
// 16); prepX pre-scales x by the inverse powers of two once per group. The +128 offset is taken out per
// group: sum q x = sum u x - 128 sum x.
const GV: u32 = 2u;
const MASK = vec4u(0xFFu, 0xFF00u, 0xFFu, 0xFF00u);
const ONE = vec4u(0x3F800000u);
const CODE_OFFSET: f32 = 128.0;
const XSCALE = vec4f(8388608.0, 32768.0, 8388608.0, 32768.0); // 2^23, 2^15, 2^23, 2^15

fn dotGroup(wv: array<vec4u, GV>, scale: f32, xp: XPrep) -> f32 {
  var d = vec4f(0.0);
  for (var j = 0u; j < 4u; j++) {
    let a = wv[0][j] ^ 0x80808080u;
    let b = wv[1][j] ^ 0x80808080u;
    d = fma(bitcast<vec4f>((vec4u(a, a, a >> 16u, a >> 16u) & MASK) | ONE) - 1.0, xp.xs[j], d);
    d = fma(bitcast<vec4f>((vec4u(b, b, b >> 16u, b >> 16u) & MASK) | ONE) - 1.0, xp.xs[4u + j], d);
  }
  return scale * ((d.x + d.y) + (d.z + d.w) - xp.offset);
}
