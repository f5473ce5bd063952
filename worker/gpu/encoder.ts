/**
 * Records many kernel dispatches into one command buffer and one compute pass, then submits once.
 *
 * Binding convention for every kernel in shaders/: binding 0 of group 0 is the kernel's uniform
 * parameter block (when it has one), bindings 1..n are its storage buffers in the order the kernel
 * declares them. Parameters of all dispatches live in one uniform arena, written once per submit.
 */
import type { Gpu } from './context';

export type Binding = GPUBuffer | { buffer: GPUBuffer; offset?: number; size?: number };

const ARENA_BYTES = 1 << 20;
const freeArenas = new WeakMap<Gpu, GPUBuffer[]>();

export class Encoder {
  private enc: GPUCommandEncoder;
  private pass: GPUComputePassEncoder | null = null;
  private arena: Uint8Array;
  private arenaUsed = 0;
  private arenaBuffer: GPUBuffer;
  dispatches = 0;

  constructor(
    readonly gpu: Gpu,
    label = 'step',
  ) {
    gpu.check();
    this.enc = gpu.device.createCommandEncoder({ label });
    this.arena = new Uint8Array(ARENA_BYTES);
    this.arenaBuffer = freeArenas.get(gpu)?.pop() ?? gpu.device.createBuffer({ label: 'params arena', size: ARENA_BYTES, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  }

  /** Reserves a slot in the uniform arena for `params`; returns its offset. */
  private param(params: ArrayBufferView): number {
    const align = this.gpu.caps.minUniformBufferOffsetAlignment;
    const offset = Math.ceil(this.arenaUsed / align) * align;
    const size = Math.max(16, Math.ceil(params.byteLength / 16) * 16);
    if (offset + size > ARENA_BYTES) throw new Error('uniform arena full: split the work into more submits');
    this.arena.set(new Uint8Array(params.buffer, params.byteOffset, params.byteLength), offset);
    this.arenaUsed = offset + size;
    return offset;
  }

  private computePass(): GPUComputePassEncoder {
    this.pass ??= this.enc.beginComputePass();
    return this.pass;
  }

  /**
   * One dispatch. `params` (u32/f32 words, any ArrayBufferView) go to binding 0; `buffers` to 1..n.
   * Pass `params = null` for kernels without a uniform block (their storage bindings then start at 0).
   */
  dispatch(pipeline: GPUComputePipeline, params: ArrayBufferView | null, buffers: Binding[], workgroups: [number, number?, number?]): void {
    const entries: GPUBindGroupEntry[] = [];
    let binding = 0;
    if (params) {
      const size = Math.max(16, Math.ceil(params.byteLength / 16) * 16);
      entries.push({ binding: binding++, resource: { buffer: this.arenaBuffer, offset: this.param(params), size } });
    }
    for (const b of buffers) {
      entries.push({ binding: binding++, resource: 'buffer' in b ? b : { buffer: b } });
    }
    const bindGroup = this.gpu.device.createBindGroup({ label: pipeline.label, layout: pipeline.getBindGroupLayout(0), entries });
    const pass = this.computePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(workgroups[0], workgroups[1] ?? 1, workgroups[2] ?? 1);
    this.dispatches++;
  }

  /**
   * Spreads `count` workgroups over x and y so no dimension exceeds the device limit. Kernels using
   * this compute their linear workgroup index as `wid.x + wid.y * nwg.x` (`@builtin(num_workgroups)`)
   * and return when it is >= count.
   */
  grid(count: number): [number, number] {
    const max = this.gpu.caps.maxComputeWorkgroupsPerDimension;
    if (count <= max) return [Math.max(1, count), 1];
    const y = Math.ceil(count / max);
    return [Math.ceil(count / y), y];
  }

  /** Ends the pass to copy between buffers (a copy cannot sit inside a compute pass). */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void {
    this.endPass();
    this.enc.copyBufferToBuffer(src, srcOffset, dst, dstOffset, size);
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = null;
  }

  /** Writes the parameter arena and submits everything recorded. The encoder cannot be reused. */
  submit(): void {
    this.endPass();
    if (this.arenaUsed > 0) this.gpu.device.queue.writeBuffer(this.arenaBuffer, 0, this.arena, 0, Math.ceil(this.arenaUsed / 4) * 4);
    this.gpu.device.queue.submit([this.enc.finish()]);
    // The arena is reused by a later Encoder once the GPU is done with this submit.
    const arena = this.arenaBuffer;
    this.gpu.device.queue.onSubmittedWorkDone().then(() => {
      const pool = freeArenas.get(this.gpu) ?? [];
      freeArenas.set(this.gpu, pool);
      if (pool.length < 8) pool.push(arena);
      else arena.destroy();
    });
  }
}

/** Packs mixed u32/i32/f32 parameters into one uniform block, in order. */
export function params(...fields: Array<number | { f32: number } | { i32: number }>): Uint32Array {
  const out = new Uint32Array(Math.max(4, Math.ceil(fields.length / 4) * 4));
  const f = new Float32Array(out.buffer);
  const i = new Int32Array(out.buffer);
  fields.forEach((v, k) => {
    if (typeof v === 'number') out[k] = v >>> 0;
    else if ('f32' in v) f[k] = v.f32;
    else i[k] = v.i32;
  });
  return out;
}
