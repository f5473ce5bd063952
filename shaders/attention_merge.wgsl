// Merges the key-split partials of attention.wgsl: for each (row, query head),
// out = sum_s acc_s e^(m_s - M) / sum_s l_s e^(m_s - M), M = max_s m_s. Empty splits carry m = -3e38, l = 0.
// With p.stats = 1, (M, L) of each (row, query head) go to part[statOff + (r * hq + head) * 2].
struct Params { T: u32, rowBase: u32, hq: u32, d: u32, nsplit: u32, mlOff: u32, stats: u32, statOff: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let wgi = wid.x + wid.y * nwg.x;
  if (wgi >= p.T * p.hq) { return; }
  let r = wgi / p.hq;
  let head = wgi % p.hq;
  let idx0 = wgi * p.nsplit;
  var mx = -3.0e38;
  for (var s = 0u; s < p.nsplit; s++) { mx = max(mx, part[p.mlOff + (idx0 + s) * 2u]); }
  var l = 0.0;
  for (var s = 0u; s < p.nsplit; s++) {
    l += part[p.mlOff + (idx0 + s) * 2u + 1u] * exp(part[p.mlOff + (idx0 + s) * 2u] - mx);
  }
  for (var c = lid; c < p.d; c += 64u) {
    var o = 0.0;
    for (var s = 0u; s < p.nsplit; s++) {
      o += part[(idx0 + s) * p.d + c] * exp(part[p.mlOff + (idx0 + s) * 2u] - mx);
    }
    out[(p.rowBase + r) * p.hq * p.d + head * p.d + c] = o / l;
  }
  if (lid == 0u && p.stats == 1u) {
    part[p.statOff + wgi * 2u] = mx;
    part[p.statOff + wgi * 2u + 1u] = l;
  }
}
