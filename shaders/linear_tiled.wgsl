// The tiled y = x·Wᵀ kernel shared by linear_f32/f16/q8/q4.wgsl, appended to one of them by
// worker/kernels/linear.ts. The format file declares Params, the bindings and load_w / load_x (ALIGNED)
// or load_w1 (odd cols); this part is the workgroup tile, the reduction across lanes and the store.
const RT = R * TT;

// #if SUBGROUPS
var<workgroup> slots: atomic<u32>;
var<workgroup> red: array<f32, (L / 4u) * RT>;
// #else
var<workgroup> red: array<f32, L * RT>;
// #endif

@compute @workgroup_size(L)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32,
// #if SUBGROUPS
        @builtin(subgroup_invocation_id) sg_lane: u32,
// #endif
) {
  let g = wid.x + wid.y * nwg.x;
  if (g >= p.count) { return; }
  let r0 = (g % p.row_blocks) * R;
  let t0 = (g / p.row_blocks) * TT;

  var acc: array<f32, RT>;
// #if ALIGNED
  for (var u = lid; u < p.nunits; u += L) {
    var ws: array<mat2x4f, R>;
    for (var r = 0u; r < R; r++) { ws[r] = load_w(min(r0 + r, p.rows - 1u), u); }
    for (var t = 0u; t < TT; t++) {
      let xv = load_x(min(t0 + t, p.tokens - 1u), u);
      for (var r = 0u; r < R; r++) { acc[r * TT + t] += dot(ws[r][0], xv[0]) + dot(ws[r][1], xv[1]); }
    }
  }
// #else
  // Odd cols: one column per lane step, scalar loads (still coalesced across lanes), nothing to mask.
  for (var c = lid; c < p.cols; c += L) {
    var ws: array<f32, R>;
    for (var r = 0u; r < R; r++) { ws[r] = load_w1(min(r0 + r, p.rows - 1u), c); }
    for (var t = 0u; t < TT; t++) {
      let xv = x[min(t0 + t, p.tokens - 1u) * p.cols + c];
      for (var r = 0u; r < R; r++) { acc[r * TT + t] += ws[r] * xv; }
    }
  }
// #endif

// #if SUBGROUPS
  // Subgroup sums, then one slot per subgroup (claimed atomically: no assumption on how lanes map to subgroups).
  for (var o = 0u; o < RT; o++) { acc[o] = subgroupAdd(acc[o]); }
  if (sg_lane == 0u) {
    let slot = atomicAdd(&slots, 1u);
    for (var o = 0u; o < RT; o++) { red[slot * RT + o] = acc[o]; }
  }
  workgroupBarrier();
  let nslots = atomicLoad(&slots);
  if (lid < RT) {
    var s = 0.0;
    for (var k = 0u; k < nslots; k++) { s += red[k * RT + lid]; }
// #else
  for (var o = 0u; o < RT; o++) { red[o * L + lid] = acc[o]; }
  workgroupBarrier();
  for (var s = L / 2u; s > 0u; s >>= 1u) {
    for (var i = lid; i < RT * s; i += L) {
      let o = i / s;
      let j = i % s;
      red[o * L + j] += red[o * L + j + s];
    }
    workgroupBarrier();
  }
  if (lid < RT) {
    let s = red[lid * L];
// #endif
    let r = r0 + lid / TT;
    let t = t0 + lid % TT;
    if (r < p.rows && t < p.tokens) {
      var v = s;
      if (p.has_bias != 0u) { v += bias[p.row_start + r]; }
      y[t * p.y_stride + p.row_start + r] = v;
    }
  }
}
