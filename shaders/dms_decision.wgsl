// The DMS decision logit that marks the token before row r of a segment (positive: evict it once it leaves
// the window), shared by the kernels that read decisions (attention.wgsl, attention_decode.wgsl,
// kv_commit.wgsl), whose Params have rowBase, hkv and carryOff and which bind alpha and state.
// NVIDIA's convention: the decision read at row r (alpha of row r) marks the token before it. Own decisions
// (FastDMS, p.carryOff != NONE): each token's own decision marks it, so the token before row r is marked by
// alpha of row r - 1, and the segment's first row takes the stream's carry (state word carryOff + h: the
// decision of the stream's last token, written by kv_commit.wgsl at the end of the previous step).
fn decisionBefore(r: u32, h: u32) -> f32 {
  if (p.carryOff == NONE) { return alpha[(p.rowBase + r) * p.hkv + h]; }
  if (r == 0u) { return bitcast<f32>(state[p.carryOff + h]); }
  return alpha[(p.rowBase + r - 1u) * p.hkv + h];
}
