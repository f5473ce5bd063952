// q4 groups for linear_mv.wgsl: 32 4-bit codes in one vec4<u32> (element c in bits 4*(c%8) of word c/8)
// and an f16 scale (unpacked to f32 by linear_mv.wgsl); w = (q - 8) * scale.
// Unpacking avoids integer-to-float conversion (the slow path on NVIDIA): `(word & 0xF << 4i) | 1.0f`
// is the float 1 + q * 2^(4i-23) exactly, so after subtracting 1 it is q scaled by a power of two, which
// prepX undoes by pre-scaling the x values once per group (shared by the R rows). Per weight: one and-or,
// one subtract, one fma. The -8 offset is taken out per group: sum (q-8) x = sum q x - 8 sum x.
const GV: u32 = 1u;
const MASK = vec4u(0xFu, 0xF0u, 0xF00u, 0xF000u);
const ONE = vec4u(0x3F800000u);
const CODE_OFFSET: f32 = 8.0;
const XSCALE = vec4f(8388608.0, 524288.0, 32768.0, 2048.0); // 2^23, 2^19, 2^15, 2^11

fn dotGroup(wv: array<vec4u, GV>, scale: f32, xp: XPrep) -> f32 {
  var d = vec4f(0.0);
  for (var j = 0u; j < 4u; j++) {
    let word = wv[0][j];
    let lo = bitcast<vec4f>((vec4u(word) & MASK) | ONE) - 1.0;
    let hi = bitcast<vec4f>((vec4u(word >> 16u) & MASK) | ONE) - 1.0;
    d = fma(lo, xp.xs[2u * j], d);
    d = fma(hi, xp.xs[2u * j + 1u], d);
  }
  return scale * ((d.x + d.y) + (d.z + d.w) - xp.offset);
}
