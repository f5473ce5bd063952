// Decode matrix-vector product (one token, cols % 32 == 0) for one part of a q4 matrix:
// y[row_start + r] = sum_c x[c] * w[r][c] (+ bias[row_start + r]); packing as in linear_q4.wgsl (8 codes
// per u32, element c in bits 4*(c%8), groups of 32 columns with an f32 scale, w = (q - 8) * scale).
// Specialized by worker/kernels/linear.ts: constants R (rows per workgroup) and L (lanes) are prepended,
// `// #if SUBGROUPS` kept or dropped.
//
// Bandwidth-shaped: a lane takes one whole group (one vec4<u32> = 32 codes, one scale) of each of the
// workgroup's R rows per step, so every weight load is 16 bytes and lanes read consecutive groups.
// Unpacking avoids integer-to-float conversion (the slow path on NVIDIA): `(word & 0xF << 4i) | 1.0f`
// is the float 1 + q * 2^(4i-23) exactly, so after subtracting 1 it is q scaled by a power of two, which
// the lane undoes by pre-scaling its x values once per group (shared by the R rows). Per weight: one
// and-or, one subtract, one fma. The -8 offset is taken out per group: sum (q-8) x = sum q x - 8 sum x.
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

const MASK = vec4u(0xFu, 0xF0u, 0xF00u, 0xF000u);
const ONE = vec4u(0x3F800000u);
const XSCALE = vec4f(8388608.0, 524288.0, 32768.0, 2048.0); // 2^23, 2^19, 2^15, 2^11

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
    var wv: array<vec4u, R>;
    var sc: array<f32, R>;
    for (var r = 0u; r < R; r++) {
      wv[r] = w[base[r] + k];
      sc[r] = scales[base[r] + k];
    }
    var xs: array<vec4f, 8>;
    var sx = vec4f(0.0);
    for (var j = 0u; j < 8u; j++) {
      let v = x[8u * k + j];
      sx += v;
      xs[j] = v * XSCALE;
    }
    let offset = 8.0 * (sx.x + sx.y + sx.z + sx.w);
    for (var r = 0u; r < R; r++) {
      var d = vec4f(0.0);
      for (var j = 0u; j < 4u; j++) {
        let word = wv[r][j];
        let lo = bitcast<vec4f>((vec4u(word) & MASK) | ONE) - 1.0;
        let hi = bitcast<vec4f>((vec4u(word >> 16u) & MASK) | ONE) - 1.0;
        d = fma(lo, xs[2u * j], d);
        d = fma(hi, xs[2u * j + 1u], d);
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
