// The sum of one f32 per invocation over a 1-D workgroup of WG invocations (WG a power of two, declared by
// the kernel), shared by rmsnorm.wgsl and qk_norm_rope.wgsl, which include it (worker/gpu/wgsl.ts) and keep
// or drop `// #if SUBGROUPS` with their own source. Every invocation must call it (it has barriers); every
// invocation gets the total.
var<workgroup> red: array<f32, WG>;

// #if SUBGROUPS
// Subgroup sums, one partial per subgroup in workgroup memory (subgroups of a 1-D workgroup are
// taken as consecutive invocation ranges), then every invocation adds the partials in order.
fn workgroupSum(v: f32, lid: u32, sgi: u32, sgs: u32) -> f32 {
  let s = subgroupAdd(v);
  if (sgi == 0u) { red[lid / sgs] = s; }
  workgroupBarrier();
  var t = 0.0;
  for (var k = 0u; k < (WG + sgs - 1u) / sgs; k++) { t += red[k]; }
  return t;
}
// #else
fn workgroupSum(v: f32, lid: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  return red[0];
}
// #endif
