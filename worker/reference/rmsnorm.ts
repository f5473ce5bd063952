/** CPU reference of kernels/rmsnorm: y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight, in f64, stored as f32. */
export function rmsNormRef(x: Float32Array, weight: Float32Array, rows: number, cols: number, eps: number): Float32Array {
  const y = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let c = 0; c < cols; c++) ss += x[r * cols + c] ** 2;
    const inv = 1 / Math.sqrt(ss / cols + eps);
    for (let c = 0; c < cols; c++) y[r * cols + c] = x[r * cols + c] * inv * weight[c];
  }
  return y;
}
