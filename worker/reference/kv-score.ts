/**
 * CPU reference of kernels/kv-score (shaders/kv_score.wgsl; policies tova and h2o): the eviction score a
 * step gives key `key` of KV head h is the sum, over the query rows r in [rowStart, rows), of the mean over
 * the g query heads of the group of its attention weight (0 where the row does not see it). tova takes the
 * last row only (rowStart = rows - 1) and replaces the old score; h2o takes every row and adds to it.
 * weights: [rows][hq][nk], as attentionWeights (./attention.ts) gives them.
 */
export function keyScore(weights: Float64Array, shape: { rows: number; hq: number; hkv: number; nk: number }, h: number, key: number, rowStart: number): number {
  const { rows, hq, hkv, nk } = shape;
  const g = hq / hkv;
  let s = 0;
  for (let r = rowStart; r < rows; r++) for (let hh = 0; hh < g; hh++) s += weights[(r * hq + h * g + hh) * nk + key];
  return s / g;
}
