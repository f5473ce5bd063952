// Decode matrix-vector product (one token, cols % 32 == 0) for one part of a q8 matrix:
// y[row_start + r] = sum_c x[c] * w[r][c] (+ bias[row_start + r]); packing as in linear_q8.wgsl (int8 codes
// 4 per u32, element c in byte c%4, groups of 32 columns with an f32 scale, w = q * scale).
// Specialized by worker/kernels/linear.ts: constants R (rows per workgroup) and L (lanes) are prepended,
// `// #if SUBGROUPS` kept or dropped.
//
// Same shape as linear_q4_mv.wgsl: a lane takes one whole group (two vec4<u32> = 32 codes, one scale) of
// each of the workgroup's R rows per step. Unpacking without integer-to-float conversion: the sign bit is
// flipped (u = q + 128 in 0..255), then `(u & 0xFF << 8i) | 1.0f` - 1.0 is u * 2^(8i-23) exactly for bytes
// i = 0, 1 (bytes 2, 3 after a shift by 16); x is pre-scaled by the inverse power of two once per group.
// The +128 offset is taken out per group: sum q x = sum u x - 128 sum x.
struct Params {
  rows: u32, cols: u32, tokens: u32, y_stride: u32,
  row_start: u32, nunits: u32, row_blocks: u32, count: u32,
  has_bias: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<vec4u>;
@group(0) @binding(2) var<storage, read> scales: array<f32>;
@group(0) @binding(3) var<storage, read> x: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
// Unused (a 16-byte placeholder) when has_bias is 0.
@group(0) @binding(5) var<storage, read> bias: array<f32>;

const MASK = vec4u(0xFFu, 0xFF00u, 0xFFu, 0xFF00u);
const ONE = vec4u(0x3F800000u);
const XSCALE = vec4f(8388608.0, 32768.0, 8388608.0, 32768.0); // 2^23, 2^15, 2^23, 2^15

// #if SUBGROUPS
var<workgroup> slots: atomic<u32>;
var<workgroup> red: array<f32, (L / 4u) * R>;
// #else
var<workgroup> red: array<f32, L * R>;
// #endif

@compute @workgroup_size(L)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32,
// #if SUBGROUPS
        @builtin(subgroup_invocation_id) sg_lane: u32,
// #endif
) {
  let g = wid.x + wid.y * nwg.x;
  if (g >= p.count) { return; }
  let r0 = g * R;
  let ng = p.cols / 32u;
  var base: array<u32, R>;
  for (var r = 0u; r < R; r++) { base[r] = min(r0 + r, p.rows - 1u) * ng; }

  var acc: array<f32, R>;
  for (var k = lid; k < ng; k += L) {
    var wa: array<vec4u, R>;
    var wb: array<vec4u, R>;
    var sc: array<f32, R>;
    for (var r = 0u; r < R; r++) {
      wa[r] = w[2u * (base[r] + k)];
      wb[r] = w[2u * (base[r] + k) + 1u];
      sc[r] = scales[base[r] + k];
    }
    var xs: array<vec4f, 8>;
    var sx = vec4f(0.0);
    for (var j = 0u; j < 8u; j++) {
      let v = x[8u * k + j];
      sx += v;
      xs[j] = v * XSCALE;
    }
    let offset = 128.0 * (sx.x + sx.y + sx.z + sx.w);
    for (var r = 0u; r < R; r++) {
      var d = vec4f(0.0);
      for (var j = 0u; j < 4u; j++) {
        let a = wa[r][j] ^ 0x80808080u;
        let b = wb[r][j] ^ 0x80808080u;
        d = fma(bitcast<vec4f>((vec4u(a, a, a >> 16u, a >> 16u) & MASK) | ONE) - 1.0, xs[j], d);
        d = fma(bitcast<vec4f>((vec4u(b, b, b >> 16u, b >> 16u) & MASK) | ONE) - 1.0, xs[4u + j], d);
      }
      acc[r] = fma(sc[r], (d.x + d.y) + (d.z + d.w) - offset, acc[r]);
    }
  }

// #if SUBGROUPS
  // Subgroup sums, then one slot per subgroup (claimed atomically: no assumption on how lanes map to subgroups).
  for (var o = 0u; o < R; o++) { acc[o] = subgroupAdd(acc[o]); }
  if (sg_lane == 0u) {
    let slot = atomicAdd(&slots, 1u);
    for (var o = 0u; o < R; o++) { red[slot * R + o] = acc[o]; }
  }
  workgroupBarrier();
  let nslots = atomicLoad(&slots);
  if (lid < R) {
    var s = 0.0;
    for (var k = 0u; k < nslots; k++) { s += red[k * R + lid]; }
// #else
  for (var o = 0u; o < R; o++) { red[o * L + lid] = acc[o]; }
  workgroupBarrier();
  for (var s = L / 2u; s > 0u; s >>= 1u) {
    for (var i = lid; i < R * s; i += L) {
      let o = i / s;
      let j = i % s;
      red[o * L + j] += red[o * L + j + s];
    }
    workgroupBarrier();
  }
  if (lid < R) {
    let s = red[lid * L];
// #endif
    let r = r0 + lid;
    if (r < p.rows) {
      var v = s;
      if (p.has_bias != 0u) { v += bias[p.row_start + r]; }
      y[p.row_start + r] = v;
    }
  }
}
