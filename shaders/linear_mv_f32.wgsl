// f32 groups for linear_mv.wgsl: 32 floats in eight vec4<u32> (bit patterns).
const GV: u32 = 8u;

fn dotGroup(wv: array<vec4u, GV>, scale: f32, xp: XPrep) -> f32 {
  var d = vec4f(0.0);
  for (var i = 0u; i < 8u; i++) { d = fma(bitcast<vec4f>(wv[i]), xp.xs[i], d); }
  return (d.x + d.y) + (d.z + d.w);
}
