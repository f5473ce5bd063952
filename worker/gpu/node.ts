/** WebGPU in Node through Dawn (the `webgpu` package): tests, the CLI and benchmarks. */
import { create, globals } from 'webgpu';
import { Gpu } from './context';

Object.assign(globalThis, globals);
// Dawn crashes the process if its instance is garbage-collected: keep it for the module's lifetime.
let instance: GPU | null = null;

export async function nodeGpu(): Promise<Gpu> {
  // Timestamps at full precision (Dawn rounds them to 65.5 µs by default): only the benchmark reads them.
  instance ??= create(['disable-dawn-features=timestamp_quantization']) as unknown as GPU;
  return Gpu.create(instance);
}
