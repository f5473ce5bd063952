// f16 groups for linear_mv.wgsl: 32 halves in four vec4<u32> (element c in the low half of word c/2 when
// c is even), unpacked with unpack2x16float (no shader-f16).
const GV: u32 = 4u;

fn dotGroup(wv: array<vec4u, GV>, scale: f32, xp: XPrep) -> f32 {
  var d = vec4f(0.0);
  for (var i = 0u; i < 4u; i++) {
    let v = wv[i];
    d = fma(vec4f(unpack2x16float(v.x), unpack2x16float(v.y)), xp.xs[2u * i], d);
    d = fma(vec4f(unpack2x16float(v.z), unpack2x16float(v.w)), xp.xs[2u * i + 1u], d);
  }
  return (d.x + d.y) + (d.z + d.w);
}
