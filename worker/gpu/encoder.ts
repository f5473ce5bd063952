/**
 * Records many kernel dispatches into one command buffer and one compute pass, then submits once.
 *
 * Binding convention for every kernel in shaders/: binding 0 of group 0 is the kernel's uniform
 * parameter block (when it has one), bindings 1..n are its storage buffers in the order the kernel
 * declares them. Parameters of all dispatches live in one uniform arena, written once per submit.
 *
 * Per-dispatch CPU cost is what bounds small decode steps (hundreds of dispatches a token), so the
 * encoder keeps, per device: one arena buffer (queue.writeBuffer is ordered with submits, so a later
 * step's write never reaches an earlier step's dispatches), each pipeline's bind group layout, and
 * every bind group it made, keyed by pipeline, arena offset and bound buffer ranges. A decode step
 * records the same dispatches with the same buffers in the same order as the step before it, so after
 * the first step no bind group is created any more: only the parameter bytes change.
 */
import type { Gpu } from './context';

export type Binding = GPUBuffer | { buffer: GPUBuffer; offset?: number; size?: number };

const ARENA_BYTES = 1 << 20;
/** Bind groups kept per device before the cache is dropped and rebuilt (a guard, not a working limit). */
const MAX_CACHED_GROUPS = 16384;

interface DeviceState {
  arena: GPUBuffer;
  /** CPU-side arena images, reused by later encoders once submitted. */
  images: Uint8Array<ArrayBuffer>[];
  groups: Map<string, GPUBindGroup>;
  layouts: WeakMap<GPUComputePipeline, GPUBindGroupLayout>;
}

const states = new WeakMap<Gpu, DeviceState>();
const ids = new WeakMap<object, number>();
let nextId = 1;

function idOf(o: object): number {
  let id = ids.get(o);
  if (id === undefined) ids.set(o, (id = nextId++));
  return id;
}

function stateOf(gpu: Gpu): DeviceState {
  let s = states.get(gpu);
  if (!s) {
    s = {
      arena: gpu.device.createBuffer({ label: 'params arena', size: ARENA_BYTES, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST }),
      images: [],
      groups: new Map(),
      layouts: new WeakMap(),
    };
    states.set(gpu, s);
    // A destroyed buffer's bind groups must not be reused (nor kept alive): drop the cache.
    gpu.onDestroy(() => s!.groups.clear());
  }
  return s;
}

/**
 * `flushEvery`: an encoder made with `{ flush: true }` submits what it has recorded every this many
 * dispatches, so the GPU starts on the first layers while the CPU still records the last ones (the queue
 * keeps the order; the engine's steps write no buffer between their dispatches). 0 turns it off.
 */
export const encoderTuning = { flushEvery: 32 };

/** Bind groups currently cached for `gpu` (tests and the benchmark's diagnostics). */
export function cachedBindGroups(gpu: Gpu): number {
  return states.get(gpu)?.groups.size ?? 0;
}

export class Encoder {
  private enc: GPUCommandEncoder;
  private pass: GPUComputePassEncoder | null = null;
  private arena: Uint8Array<ArrayBuffer>;
  private arenaUsed = 0;
  private readonly state: DeviceState;
  private lastPipeline: GPUComputePipeline | null = null;
  /** Arena bytes already written by an early flush. */
  private arenaFlushed = 0;
  private sinceFlush = 0;
  private readonly flushEvery: number;
  dispatches = 0;
  submits = 0;
  /** Timestamp writes of the first compute pass (the benchmark's GPU timings). */
  private timestamps: GPUComputePassTimestampWrites | undefined;

  constructor(
    readonly gpu: Gpu,
    private readonly label = 'step',
    opts: { flush?: boolean; timestamps?: GPUComputePassTimestampWrites } = {},
  ) {
    gpu.check();
    this.flushEvery = opts.flush ? encoderTuning.flushEvery : 0;
    this.timestamps = opts.timestamps;
    this.state = stateOf(gpu);
    this.enc = gpu.device.createCommandEncoder({ label });
    this.arena = this.state.images.pop() ?? new Uint8Array(ARENA_BYTES);
  }

  /** Reserves a slot in the uniform arena for `params`; returns its offset. */
  private param(params: ArrayBufferView, size: number): number {
    const align = this.gpu.caps.minUniformBufferOffsetAlignment;
    const offset = Math.ceil(this.arenaUsed / align) * align;
    if (offset + size > ARENA_BYTES) throw new Error('uniform arena full: split the work into more submits');
    this.arena.set(new Uint8Array(params.buffer, params.byteOffset, params.byteLength), offset);
    this.arenaUsed = offset + size;
    return offset;
  }

  private computePass(): GPUComputePassEncoder {
    if (!this.pass) {
      this.pass = this.enc.beginComputePass(this.timestamps ? { timestampWrites: this.timestamps } : undefined);
      this.timestamps = undefined;
      this.lastPipeline = null;
    }
    return this.pass;
  }

  private layout(pipeline: GPUComputePipeline): GPUBindGroupLayout {
    let l = this.state.layouts.get(pipeline);
    if (!l) this.state.layouts.set(pipeline, (l = pipeline.getBindGroupLayout(0)));
    return l;
  }

  /**
   * One dispatch. `params` (u32/f32 words, any ArrayBufferView) go to binding 0; `buffers` to 1..n.
   * Pass `params = null` for kernels without a uniform block (their storage bindings then start at 0).
   */
  dispatch(pipeline: GPUComputePipeline, params: ArrayBufferView | null, buffers: Binding[], workgroups: [number, number?, number?]): void {
    let key = String(idOf(pipeline));
    let offset = -1, size = 0;
    if (params) {
      size = Math.max(16, Math.ceil(params.byteLength / 16) * 16);
      offset = this.param(params, size);
      key += `|${offset}:${size}`;
    }
    for (const b of buffers) {
      if ('buffer' in b) key += `|${idOf(b.buffer)}:${b.offset ?? 0}:${b.size ?? -1}`;
      else key += `|${idOf(b)}`;
    }
    const groups = this.state.groups;
    let bindGroup = groups.get(key);
    if (!bindGroup) {
      const entries: GPUBindGroupEntry[] = [];
      let binding = 0;
      if (params) entries.push({ binding: binding++, resource: { buffer: this.state.arena, offset, size } });
      for (const b of buffers) entries.push({ binding: binding++, resource: 'buffer' in b ? b : { buffer: b } });
      bindGroup = this.gpu.device.createBindGroup({ label: pipeline.label, layout: this.layout(pipeline), entries });
      if (groups.size >= MAX_CACHED_GROUPS) groups.clear();
      groups.set(key, bindGroup);
    }
    const pass = this.computePass();
    if (pipeline !== this.lastPipeline) {
      pass.setPipeline(pipeline);
      this.lastPipeline = pipeline;
    }
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(workgroups[0], workgroups[1] ?? 1, workgroups[2] ?? 1);
    this.dispatches++;
    if (this.flushEvery > 0 && ++this.sinceFlush >= this.flushEvery) this.flush();
  }

  /** Submits what is recorded so far and goes on recording into a fresh command encoder. */
  flush(): void {
    this.send();
    this.enc = this.gpu.device.createCommandEncoder({ label: this.label });
    this.sinceFlush = 0;
  }

  private send(): void {
    this.endPass();
    // writeBuffer is ordered before this submit and after every earlier one, and copies the bytes now.
    const end = Math.ceil(this.arenaUsed / 4) * 4;
    if (end > this.arenaFlushed) this.gpu.device.queue.writeBuffer(this.state.arena, this.arenaFlushed, this.arena, this.arenaFlushed, end - this.arenaFlushed);
    this.arenaFlushed = end;
    this.gpu.device.queue.submit([this.enc.finish()]);
    this.submits++;
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
    this.send();
    if (this.state.images.length < 4) this.state.images.push(this.arena);
  }
}

const f32Bits = new Float32Array(1);
const f32Word = new Uint32Array(f32Bits.buffer);

/** Packs mixed u32/i32/f32 parameters into one uniform block, in order. */
export function params(...fields: Array<number | { f32: number } | { i32: number }>): Uint32Array {
  const out = new Uint32Array(Math.max(4, Math.ceil(fields.length / 4) * 4));
  for (let k = 0; k < fields.length; k++) {
    const v = fields[k];
    if (typeof v === 'number') out[k] = v >>> 0;
    else if ('f32' in v) {
      f32Bits[0] = v.f32;
      out[k] = f32Word[0];
    } else out[k] = v.i32 >>> 0;
  }
  return out;
}
