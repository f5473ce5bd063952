/** The Node WebGPU device shared by all tests of a file (Dawn: lavapipe or SwiftShader). */
import type { Gpu } from '../worker/gpu/context';
import { nodeGpu } from '../worker/gpu/node';

let gpu: Promise<Gpu> | null = null;
export function testGpu(): Promise<Gpu> {
  gpu ??= nodeGpu();
  return gpu;
}

/** Max |a-b| / (atol + rtol*|b|) over all elements; <= 1 means within tolerance. */
export function maxRelErr(a: ArrayLike<number>, b: ArrayLike<number>, atol = 1e-5, rtol = 1e-4): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const e = Math.abs(a[i] - b[i]) / (atol + rtol * Math.abs(b[i]));
    if (!(e <= worst)) worst = Number.isNaN(e) ? Infinity : Math.max(worst, e);
  }
  return worst;
}

/** Deterministic pseudo-random floats in [-scale, scale). */
export function randn(n: number, seed = 1, scale = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = ((s / 4294967296) * 2 - 1) * scale;
  }
  return out;
}
