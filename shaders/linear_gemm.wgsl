// The many-token y = x·Wᵀ kernel (prefill), shared by linear_f32/f16/q8/q4.wgsl like linear_tiled.wgsl:
// worker/kernels/linear.ts appends it to one of them (ALIGNED: load_w and load_x of 8-column units) and
// prepends the constants TM, TN (the workgroup's tile: TM tokens x TN rows), MT and NT (tokens and rows per
// thread, multiples of 4). A register-blocked GEMM: the tile's x (TM x 32) and dequantized weights (TN x 32)
// are staged in workgroup memory per 32-column step, each thread keeps an MT x NT block of outputs in
// registers. Each weight is read once per TM tokens and each x value once per TN rows, where the lane-split
// kernel (linear_tiled.wgsl) rereads x for every 4 rows. Rows and tokens past the ends are clamped on load
// and not stored. Needs cols % 32 == 0.
const TK: u32 = 32u;
const NX: u32 = TN / NT;    // threads along rows (NT rows each)
const NY: u32 = TM / MT;     // threads along tokens (MT tokens each)
const WG: u32 = NX * NY;

var<workgroup> xs: array<vec4f, TK * TM / 4u>; // [k][token / 4]
var<workgroup> ws: array<vec4f, TK * TN / 4u>; // [k][row / 4]

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let g = wid.x + wid.y * nwg.x;
  if (g >= p.count) { return; }
  let r0 = (g % p.row_blocks) * TN;
  let t0 = (g / p.row_blocks) * TM;
  let tx = lid % NX;
  let ty = lid / NX;

  var acc: array<array<vec4f, NT / 4u>, MT>;
  for (var k0 = 0u; k0 < p.cols; k0 += TK) {
    // Weights: TN rows x 4 units of 8 columns, stored transposed (k-major).
    for (var i = lid; i < TN * 4u; i += WG) {
      let r = i / 4u;
      let u = i % 4u;
      let m = load_w(min(r0 + r, p.rows - 1u), k0 / 8u + u);
      for (var e = 0u; e < 4u; e++) {
        ws[(8u * u + e) * (TN / 4u) + r / 4u][r % 4u] = m[0][e];
        ws[(8u * u + 4u + e) * (TN / 4u) + r / 4u][r % 4u] = m[1][e];
      }
    }
    // x: TM tokens x 4 units of 8 columns, transposed likewise.
    for (var i = lid; i < TM * 4u; i += WG) {
      let t = i / 4u;
      let u = i % 4u;
      let m = load_x(min(t0 + t, p.tokens - 1u), k0 / 8u + u);
      for (var e = 0u; e < 4u; e++) {
        xs[(8u * u + e) * (TM / 4u) + t / 4u][t % 4u] = m[0][e];
        xs[(8u * u + 4u + e) * (TM / 4u) + t / 4u][t % 4u] = m[1][e];
      }
    }
    workgroupBarrier();
    for (var k = 0u; k < TK; k++) {
      var wv: array<vec4f, NT / 4u>;
      for (var j = 0u; j < NT / 4u; j++) { wv[j] = ws[k * (TN / 4u) + tx * (NT / 4u) + j]; }
      for (var i = 0u; i < MT / 4u; i++) {
        let xv = xs[k * (TM / 4u) + ty * (MT / 4u) + i];
        for (var j = 0u; j < NT / 4u; j++) {
          acc[4u * i][j] = fma(vec4f(xv.x), wv[j], acc[4u * i][j]);
          acc[4u * i + 1u][j] = fma(vec4f(xv.y), wv[j], acc[4u * i + 1u][j]);
          acc[4u * i + 2u][j] = fma(vec4f(xv.z), wv[j], acc[4u * i + 2u][j]);
          acc[4u * i + 3u][j] = fma(vec4f(xv.w), wv[j], acc[4u * i + 3u][j]);
        }
      }
    }
    workgroupBarrier();
  }

  for (var i = 0u; i < MT; i++) {
    let t = t0 + ty * MT + i;
    if (t >= p.tokens) { break; }
    for (var j = 0u; j < NT; j++) {
      let r = r0 + tx * NT + j;
      if (r < p.rows) {
        var v = acc[i][j / 4u][j % 4u];
        if (p.has_bias != 0u) { v += bias[p.row_start + r]; }
        y[t * p.y_stride + p.row_start + r] = v;
      }
    }
  }
}
