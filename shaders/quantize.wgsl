// Converts checkpoint rows (f32, f16 or bf16, as raw words in a staging buffer) into the GPU weight
// layouts of worker/model/types.ts (MatrixPart), bit for bit as packRows (worker/load/pack.ts) does on
// the CPU. Everything is integer arithmetic on the f32 bit patterns: no float conversion, division or
// rounding of the GPU is trusted (WGSL allows 2.5 ulp division, either rounding direction for f32->f16,
// and flushing subnormals), so the results do not depend on the adapter.
//
// Specialized by worker/kernels/quantize.ts: one of SRC_F32 / SRC_F16 / SRC_BF16 and one of OUT_F32 /
// OUT_F16 / OUT_Q8 / OUT_Q4 (QUANT for Q8/Q4: the scales binding).
// Rows r = 0..rows of `cols` elements: element (r, c) is element src_base + r * cols + c of the staging
// buffer; its packed row goes to row dst_row + r of the part. Thread i handles:
//   OUT_F32: element i; OUT_F16: output word i (two elements); QUANT: one scale word of one row, i.e. two
//   groups of 32 and their two f16 scales (worker/load/pack.ts, rowScaleWords).
struct Params { rows: u32, cols: u32, src_base: u32, dst_row: u32, count: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;
// #if QUANT
@group(0) @binding(3) var<storage, read_write> scales: array<u32>;
// #endif

// f16 bits -> f32 bits, exact (subnormals normalised, infinities and NaN payloads kept).
fn f16_to_f32_bits(h: u32) -> u32 {
  let sign = (h & 0x8000u) << 16u;
  let e = (h >> 10u) & 31u;
  let m = h & 0x3ffu;
  if (e == 0u) {
    if (m == 0u) { return sign; }
    let lead = firstLeadingBit(m); // 0..9: value = m * 2^-24
    return sign | ((lead + 103u) << 23u) | ((m << (23u - lead)) & 0x7fffffu);
  }
  if (e == 31u) { return sign | 0x7f800000u | (m << 13u); }
  return sign | ((e + 112u) << 23u) | (m << 13u);
}

// Element i of the staging buffer as f32 bits.
fn elem(i: u32) -> u32 {
// #if SRC_F32
  return src[i];
// #endif
// #if SRC_BF16
  return ((src[i >> 1u] >> (16u * (i & 1u))) & 0xffffu) << 16u;
// #endif
// #if SRC_F16
  return f16_to_f32_bits((src[i >> 1u] >> (16u * (i & 1u))) & 0xffffu);
// #endif
}

// f32 bits -> f16 bits, round to nearest even, as f32ToF16Bits in worker/model/dtype.ts.
fn f32_to_f16_bits(b: u32) -> u32 {
  let sign = (b >> 16u) & 0x8000u;
  let exp = (b >> 23u) & 0xffu;
  let man = b & 0x7fffffu;
  if (exp == 0xffu) { return sign | select(0x7c00u, 0x7e00u, man != 0u); }
  let e = i32(exp) - 112;
  if (e >= 31) { return sign | 0x7c00u; }
  if (e <= 0) {
    if (e < -10) { return sign; }
    let full = man | 0x800000u;
    let shift = u32(14 - e); // 14..24
    var m = full >> shift;
    let rem = full & ((1u << shift) - 1u);
    let half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (m & 1u) == 1u)) { m += 1u; }
    return sign | m;
  }
  var h = (u32(e) << 10u) | (man >> 13u);
  let rem = man & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u) == 1u)) { h += 1u; }
  return sign | h;
}

// Integer significand and exponent of a non-negative finite f32: value = sig * 2^exp.
fn sig(b: u32) -> u32 { return select((b & 0x7fffffu) | 0x800000u, b & 0x7fffffu, (b >> 23u) == 0u); }
fn expo(b: u32) -> i32 { return select(i32(b >> 23u) - 150, -149, (b >> 23u) == 0u); }

// Correctly rounded a / d for a non-negative finite f32 (bits) and a small integer d (7 or 127), as
// Math.fround(a / d) computes it.
fn div_round(a: u32, d: u32) -> u32 {
  if (a == 0u) { return 0u; }
  let n = sig(a) << 8u;            // < 2^32
  let e = expo(a) - 8;             // value = (q + r/d) * 2^e
  let q = n / d;
  let r = n % d;
  let top = i32(firstLeadingBit(q));
  let lsb = max(top + e - 23, -149); // exponent of the result's last mantissa bit
  let s = u32(lsb - e);              // 1..8 (see docs/real-models.md)
  var mant = q >> s;
  let rem = q & ((1u << s) - 1u);
  let half = 1u << (s - 1u);
  if (rem > half || (rem == half && (r != 0u || (mant & 1u) == 1u))) { mant += 1u; }
  var l = lsb;
  if (mant == 0x1000000u) { mant = 0x800000u; l += 1; }
  if (mant < 0x800000u) { return mant; } // subnormal (or zero)
  return (u32(l + 150) << 23u) | (mant & 0x7fffffu);
}

// round(|x| / s), ties away from zero, for |x| and s (> 0) finite f32 bits; saturates at `qmax`.
fn quant_mag(x: u32, s: u32, qmax: u32) -> u32 {
  let xs = sig(x);
  if (xs == 0u) { return 0u; }
  let ss = sig(s);
  let k = expo(x) - expo(s);
  var q = 0u;
  if (k >= 0) {
    if (k >= 32 || (k > 0 && (xs >> u32(32 - k)) != 0u)) { return qmax; }
    let n = xs << u32(k);
    q = n / ss;
    let r = n % ss;
    if (r >= ss - r) { q += 1u; }
  } else {
    if (-k >= 32 || (ss >> u32(32 + k)) != 0u) { return 0u; }
    let dd = ss << u32(-k);
    q = xs / dd;
    let r = xs % dd;
    if (r >= dd - r) { q += 1u; }
  }
  return min(q, qmax);
}

// #if QUANT
// f16 bits of a group's scale: maxabs / qmax rounded to f32, then to f16, a finite one saturating at 65504
// (groupScaleBits in worker/load/pack.ts).
fn scale_bits(maxabs: u32, qmax: u32) -> u32 {
  if ((maxabs >> 23u) == 0xffu) { return f32_to_f16_bits(select(0x7f800000u, 0x7fc00000u, (maxabs & 0x7fffffu) != 0u)); }
  let h = f32_to_f16_bits(div_round(maxabs, qmax));
  return select(h, 0x7bffu, (h & 0x7c00u) == 0x7c00u);
}

// Quantizes group g of row r (codes into dst) and returns its scale's f16 bits.
fn quant_group(r: u32, g: u32, groups: u32) -> u32 {
  let c0 = g * 32u;
  let c1 = min(p.cols, c0 + 32u);
  let base = p.src_base + r * p.cols;
  var maxabs = 0u;
  for (var c = c0; c < c1; c += 1u) { maxabs = max(maxabs, elem(base + c) & 0x7fffffffu); }
// #if OUT_Q8
  let qmax = 127u;
// #else
  let qmax = 7u;
// #endif
  let s16 = scale_bits(maxabs, qmax);
  // The codes are rounded against the f16 scale the kernels multiply by.
  let scale = f16_to_f32_bits(s16);
  let ok = scale != 0u && (scale >> 23u) != 0xffu;
// #if OUT_Q8
  let words = groups * 8u;
  for (var w = 0u; w < 8u; w += 1u) {
    var word = 0u;
    for (var k = 0u; k < 4u; k += 1u) {
      let c = c0 + w * 4u + k;
      if (ok && c < c1) {
        let x = elem(base + c);
        let m = quant_mag(x & 0x7fffffffu, scale, qmax);
        let q = select(m, (0u - m) & 0xffu, (x >> 31u) == 1u);
        word |= q << (8u * k);
      }
    }
    dst[(p.dst_row + r) * words + g * 8u + w] = word;
  }
// #else
  let words = groups * 4u;
  for (var w = 0u; w < 4u; w += 1u) {
    var word = 0u;
    for (var k = 0u; k < 8u; k += 1u) {
      let c = c0 + w * 8u + k;
      var code = 8u;
      if (ok && c < c1) {
        let x = elem(base + c);
        let m = quant_mag(x & 0x7fffffffu, scale, qmax);
        code = select(8u + m, 8u - m, (x >> 31u) == 1u);
      }
      word |= code << (4u * k);
    }
    dst[(p.dst_row + r) * words + g * 4u + w] = word;
  }
// #endif
  return s16;
}
// #endif

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * 64u + lid;
  if (i >= p.count) { return; }
// #if OUT_F32
  let r = i / p.cols;
  let c = i % p.cols;
  dst[(p.dst_row + r) * p.cols + c] = elem(p.src_base + i);
// #endif
// #if OUT_F16
  let wpr = (p.cols + 1u) / 2u;
  let r = i / wpr;
  let c = (i % wpr) * 2u;
  let base = p.src_base + r * p.cols + c;
  let lo = f32_to_f16_bits(elem(base));
  var hi = 0u;
  if (c + 1u < p.cols) { hi = f32_to_f16_bits(elem(base + 1u)); }
  dst[(p.dst_row + r) * wpr + c / 2u] = lo | (hi << 16u);
// #endif
// #if QUANT
  // One scale word (two groups of 32 of one row, the second absent at the end of an odd row).
  let groups = (p.cols + 31u) / 32u;
  let swords = (groups + 1u) / 2u;
  let r = i / swords;
  let pair = i % swords;
  var sword = 0u;
  for (var h = 0u; h < 2u; h += 1u) {
    let g = 2u * pair + h;
    if (g < groups) {
      let s16 = quant_group(r, g, groups);
      sword |= s16 << (16u * h);
    }
  }
  scales[(p.dst_row + r) * swords + pair] = sword;
// #endif
}
