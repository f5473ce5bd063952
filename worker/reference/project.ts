/**
 * CPU reference of kernels/linear `project` (and of the fused decode matvec, shaders/linear_mv.wgsl):
 * y (=, or += with 'add') epilogue(rmsnorm(x) · Wᵀ (+ bias)), composed of the other references.
 * y holds the previous values for 'add' (the residual stream); it is not modified.
 */
import { linearRef } from './linear';
import { rmsNormRef } from './rmsnorm';
import { siluMulRef } from './silu-mul';

export interface ProjectRefOptions {
  norm?: { weight: Float32Array; eps: number } | null;
  bias?: Float32Array | null;
  epilogue?: 'store' | 'add' | 'silu';
}

export function projectRef(x: Float32Array, w: Float32Array, rows: number, cols: number, tokens: number, o: ProjectRefOptions, y?: Float32Array): Float32Array {
  const input = o.norm ? rmsNormRef(x, o.norm.weight, tokens, cols, o.norm.eps) : x;
  const product = linearRef(input, w, rows, cols, tokens, o.bias ?? null);
  if (o.epilogue === 'silu') return siluMulRef(product, tokens, rows / 2);
  if (o.epilogue === 'add') {
    if (!y) throw new Error("projectRef: 'add' needs the previous y");
    return product.map((v, i) => y[i] + v);
  }
  return product;
}
