// q8/q4 weight scales, shared by the kernels that read them (linear_mv.wgsl, linear_q8/q4.wgsl, embed.wgsl,
// which include it: worker/gpu/wgsl.ts): f16, two a word, group g of a row in the low half of word g/2 when g
// is even; each row's words start afresh, so a row of `groups` groups is (groups + 1) / 2 words
// (worker/load/pack.ts, rowScaleWords; scaleAt there is the CPU twin). The includer declares `scales: array<u32>`.
fn weightScale(r: u32, g: u32, groups: u32) -> f32 {
  return unpack2x16float(scales[r * ((groups + 1u) / 2u) + g / 2u])[g & 1u];
}
