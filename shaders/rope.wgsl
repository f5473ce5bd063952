// RoPE's rotation angle, shared by the kernels that rotate q and k (qk_norm_rope.wgsl for any rows, and
// attention_decode.wgsl, which rotates the step's own q and k heads itself), and the flags of that transform
// (worker/kernels/qk-norm-rope.ts, qkFlags): per-head RMSNorm of q, of k; the DMS decision from the borrowed
// q channel; that channel zeroed again after RoPE (NVIDIA's convention).
const Q_NORM = 1u;
const K_NORM = 2u;
const DMS = 4u;
const DMS_ZERO_AFTER = 8u;

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
