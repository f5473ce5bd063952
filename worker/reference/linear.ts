/** CPU reference of kernels/linear: y[t][r] = sum_c x[t][c] * w[r][c] (+ bias[r]), accumulated in f64. */
export function linearRef(x: Float32Array, w: Float32Array, rows: number, cols: number, tokens: number, bias?: Float32Array | null): Float32Array {
  const y = new Float32Array(tokens * rows);
  for (let t = 0; t < tokens; t++) {
    for (let r = 0; r < rows; r++) {
      let s = bias ? bias[r] : 0;
      const xo = t * cols, wo = r * cols;
      for (let c = 0; c < cols; c++) s += x[xo + c] * w[wo + c];
      y[t * rows + r] = s;
    }
  }
  return y;
}
