/** CPU reference of kernels/silu-mul: out[r][j] = silu(gateUp[r][j]) * gateUp[r][F + j], in f64. */
export function siluMulRef(gateUp: Float32Array, rows: number, F: number): Float32Array {
  const out = new Float32Array(rows * F);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < F; j++) {
      const g = gateUp[r * 2 * F + j];
      out[r * F + j] = (g / (1 + Math.exp(-g))) * gateUp[r * 2 * F + F + j];
    }
  }
  return out;
}
