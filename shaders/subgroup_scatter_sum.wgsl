// Sums of SN values per lane over lanes of a subgroup, by reduce-scatter: the decode attention's scores
// (attention_decode.wgsl includes it, worker/gpu/wgsl.ts). The includer declares SN (a power of two) and SR
// (rounds: 2^SR <= SN and 2^SR <= the span it sums over; `scatterConstants` in worker/gpu/wgsl.ts).
// Round r: lanes that differ in bit SR-1-r swap halves of what they hold and each keeps the half its bit names,
// summed (SN/2, SN/4, ... shuffles); then a butterfly over the lane bits from SR up to `span` on the SK values
// each lane kept. SN - SK + SK * log2(span / 2^SR) shuffles, against SN * log2(span) for a sum of each value
// (the attention's 8 scores over 16 lanes: 8 against 32). Afterwards lane i holds the totals of values SK * (i % 2^SR) ..
// SK * (i % 2^SR) + SK - 1, in that order. `span` is a power of two no larger than the subgroup; lanes differing
// only in bits below it are summed together. Call in uniform control flow.
const SK: u32 = SN >> SR;

fn scatterSum(v: array<f32, SN>, lane: u32, span: u32) -> array<f32, SK> {
  var a = v;
  for (var r = 0u; r < SR; r++) {
    let bit = 1u << (SR - 1u - r);
    let half = SN >> (r + 1u);
    let upper = (lane & bit) != 0u;
    for (var i = 0u; i < SN / 2u; i++) {
      if (i < half) {
        let give = select(a[i + half], a[i], upper);
        a[i] = select(a[i], a[i + half], upper) + subgroupShuffleXor(give, bit);
      }
    }
  }
  var t: array<f32, SK>;
  for (var k = 0u; k < SK; k++) { t[k] = a[k]; }
  for (var x = 1u << SR; x < span; x <<= 1u) {
    for (var k = 0u; k < SK; k++) { t[k] += subgroupShuffleXor(t[k], x); }
  }
  return t;
}
