// In place on qkv f32[rows][(Hq + 2 Hkv) * d] (q heads, then k heads, then v heads; v is not touched).
// One workgroup per (row, q or k head), invocation i handles the channel pairs (i, i + d/2), i += WG:
//   1. optional per-head RMSNorm with qNorm / kNorm weights f32[d] (Qwen3),
//   2. DMS (flag): on the first q head of each GQA group, alpha[row * Hkv + kv] = scale * x[c] - offset
//      for the borrowed channel c = dmsChannel (d-1 in both published formats), then x[c] = 0,
//   3. rotate-half RoPE at angle positions[row] * invFreq[i] (f32 product, as Hugging Face),
//   4. DMS with flag DMS_ZERO_AFTER (NVIDIA's convention): channel c is zeroed again (the rotation moved
//      x[c -/+ d/2] * sin into it); FastDMS's convention leaves the rotated value.
// #if SUBGROUPS
enable subgroups;
// #endif
struct Params { rows: u32, numHeads: u32, numKvHeads: u32, headDim: u32, eps: f32, flags: u32, dmsScale: f32, dmsOffset: f32, dmsChannel: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> positions: array<u32>;
@group(0) @binding(3) var<storage, read> invFreq: array<f32>;
@group(0) @binding(4) var<storage, read> qNorm: array<f32>;
@group(0) @binding(5) var<storage, read> kNorm: array<f32>;
@group(0) @binding(6) var<storage, read_write> alpha: array<f32>;

const WG = 64u;
// Channel pairs per invocation: head dims up to 2 * WG * MAXP = 512.
const MAXP = 4u;
const Q_NORM = 1u;
const K_NORM = 2u;
const DMS = 4u;
const DMS_ZERO_AFTER = 8u;

// #include workgroup_sum.wgsl

// cos and sin of an angle of any size, to about 1e-7 (WGSL's cos/sin are only bounded to 2^-11 on [-π, π]
// and several GPUs use such approximations). Cody-Waite reduction by 2π = C1 + C2 + C3 (k * C1 and k * C2
// are exact for |k| < 2^16: angles up to ~400K), then by π/2 = P1 + P2 + P3 to [-π/4, π/4], then Taylor
// polynomials whose truncation error there is below 2e-9.
const INV_TWO_PI = 0.15915494309189535;
const C1 = 6.28125;
const C2 = 0.0019378662109375;
const C3 = -2.559031372584286e-6;
const TWO_OVER_PI = 0.6366197723675814;
const P1 = 1.5703125;
const P2 = 0.0004838267923332751;
const P3 = 2.5632829192545614e-12;
fn cosSin(x: f32) -> vec2f {
  let k = round(x * INV_TWO_PI);
  let r = ((x - k * C1) - k * C2) - k * C3;
  let q = round(r * TWO_OVER_PI);
  let t = ((r - q * P1) - q * P2) - q * P3;
  let t2 = t * t;
  let s = t * (1.0 + t2 * (-1.0 / 6.0 + t2 * (1.0 / 120.0 + t2 * (-1.0 / 5040.0 + t2 * (1.0 / 362880.0)))));
  let c = 1.0 + t2 * (-0.5 + t2 * (1.0 / 24.0 + t2 * (-1.0 / 720.0 + t2 * (1.0 / 40320.0 + t2 * (-1.0 / 3628800.0)))));
  // x = t + q π/2 (mod 2π), q in -2..2.
  switch (i32(q) & 3) {
    case 1: { return vec2f(-s, c); }
    case 2: { return vec2f(-c, -s); }
    case 3: { return vec2f(s, -c); }
    default: { return vec2f(c, s); }
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32,
// #if SUBGROUPS
        @builtin(subgroup_invocation_id) sgi: u32, @builtin(subgroup_size) sgs: u32,
// #endif
) {
  let heads = p.numHeads + p.numKvHeads;
  let idx = wid.x + wid.y * nwg.x;
  if (idx >= p.rows * heads) { return; }
  let row = idx / heads;
  let head = idx - row * heads;
  let isQ = head < p.numHeads;
  let d = p.headDim;
  let half = d / 2u;
  let base = (row * (heads + p.numKvHeads) + head) * d;

  var a: array<f32, MAXP>;
  var b: array<f32, MAXP>;
  var ss = 0.0;
  for (var k = 0u; k < MAXP; k++) {
    let i = lid + k * WG;
    if (i < half) {
      a[k] = qkv[base + i];
      b[k] = qkv[base + half + i];
      ss += a[k] * a[k] + b[k] * b[k];
    }
  }

  let norm = select((p.flags & K_NORM) != 0u, (p.flags & Q_NORM) != 0u, isQ);
  if (norm) {
// #if SUBGROUPS
    let total = workgroupSum(ss, lid, sgi, sgs);
// #else
    let total = workgroupSum(ss, lid);
// #endif
    let r = inverseSqrt(total / f32(d) + p.eps);
    for (var k = 0u; k < MAXP; k++) {
      let i = lid + k * WG;
      if (i < half) {
        var wa: f32;
        var wb: f32;
        if (isQ) { wa = qNorm[i]; wb = qNorm[half + i]; } else { wa = kNorm[i]; wb = kNorm[half + i]; }
        a[k] = a[k] * r * wa;
        b[k] = b[k] * r * wb;
      }
    }
  }

  let g = p.numHeads / p.numKvHeads;
  let dmsHead = isQ && (p.flags & DMS) != 0u && head % g == 0u;
  // The borrowed channel is a[ci] (c < d/2) or b[ci] (c >= d/2) of the invocation handling pair ci.
  let inB = p.dmsChannel >= half;
  let ci = select(p.dmsChannel, p.dmsChannel - half, inB);
  let zeroAfter = (p.flags & DMS_ZERO_AFTER) != 0u;
  let pos = f32(positions[row]);
  for (var k = 0u; k < MAXP; k++) {
    let i = lid + k * WG;
    if (i < half) {
      let borrowed = dmsHead && i == ci;
      if (borrowed) {
        alpha[row * p.numKvHeads + head / g] = p.dmsScale * select(a[k], b[k], inB) - p.dmsOffset;
        if (inB) { b[k] = 0.0; } else { a[k] = 0.0; }
      }
      let cs = cosSin(pos * invFreq[i]);
      let zero = borrowed && zeroAfter;
      qkv[base + i] = select(a[k] * cs.x - b[k] * cs.y, 0.0, zero && !inB);
      qkv[base + half + i] = select(b[k] * cs.x + a[k] * cs.y, 0.0, zero && inB);
    }
  }
}
