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
 *
 * A decode step goes further (StepPlan): an encoder made with `{ capture: true }` records nothing and
 * collects the dispatches instead; `plan()` turns them into a list of (pipeline, bind group, workgroups)
 * over a parameter buffer of its own, written once. `replay(plan)` then records a later, identical step
 * with three native calls per dispatch and no JavaScript work per dispatch beyond them. A plan is valid
 * as long as every buffer it binds lives and the step needs the same parameters (the engine keys plans by
 * what changes them: worker/engine/forward.ts).
 */
import type { Gpu } from './context';

export type Binding = GPUBuffer | { buffer: GPUBuffer; offset?: number; size?: number };

/** One recorded command of a StepPlan. */
type PlanItem =
  | { pipeline: GPUComputePipeline; group: GPUBindGroup; x: number; y: number; z: number }
  | { copy: [GPUBuffer, number, GPUBuffer, number, number] };

/** A step's commands, recorded once and replayed (see the file comment). */
export class StepPlan {
  constructor(
    private readonly gpu: Gpu,
    readonly items: readonly PlanItem[],
    private readonly uniform: GPUBuffer | null,
    readonly dispatches: number,
  ) {}

  /** The pipeline label of every dispatch, in order (profiles). */
  labels(): string[] {
    return this.items.flatMap((it) => ('pipeline' in it ? [it.pipeline.label] : []));
  }

  destroy(): void {
    if (this.uniform) this.gpu.destroy(this.uniform);
  }
}

/** A dispatch as collected by a capturing encoder. */
interface Captured {
  pipeline: GPUComputePipeline;
  params: Uint8Array | null;
  buffers: Binding[];
  workgroups: [number, number, number];
}

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
export const encoderTuning = { flushEvery: 64 };

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
  /** Replays record each dispatch in a pass of its own with timestamps here (see profile()). */
  private readonly profileSet: GPUQuerySet | null;
  /** Collected commands of a capturing encoder (null: this encoder records). */
  private readonly captured: Array<Captured | { copy: [GPUBuffer, number, GPUBuffer, number, number] }> | null;

  constructor(
    readonly gpu: Gpu,
    private readonly label = 'step',
    opts: { flush?: boolean; timestamps?: GPUComputePassTimestampWrites; capture?: boolean; profile?: GPUQuerySet } = {},
  ) {
    gpu.check();
    this.profileSet = opts.profile ?? null;
    this.flushEvery = opts.flush ? encoderTuning.flushEvery : 0;
    this.timestamps = opts.timestamps;
    this.state = stateOf(gpu);
    this.captured = opts.capture ? [] : null;
    this.enc = gpu.device.createCommandEncoder({ label });
    // A capturing encoder keeps its parameters with the captured dispatches, not in the arena.
    this.arena = this.captured ? new Uint8Array(0) : this.state.images.pop() ?? new Uint8Array(ARENA_BYTES);
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
    if (this.captured) {
      const bytes = params ? new Uint8Array(params.buffer, params.byteOffset, params.byteLength).slice() : null;
      this.captured.push({ pipeline, params: bytes, buffers: [...buffers], workgroups: [workgroups[0], workgroups[1] ?? 1, workgroups[2] ?? 1] });
      this.dispatches++;
      return;
    }
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

  /**
   * A capturing encoder's commands as a StepPlan: their parameters in one uniform buffer of the plan's own
   * (written now), a bind group per dispatch. The encoder cannot be used afterwards.
   */
  plan(): StepPlan {
    const captured = this.captured;
    if (!captured) throw new Error('Encoder.plan(): not a capturing encoder');
    const align = this.gpu.caps.minUniformBufferOffsetAlignment;
    let bytes = 0;
    const offsets = captured.map((c) => {
      if (!('pipeline' in c) || !c.params) return -1;
      const offset = Math.ceil(bytes / align) * align;
      bytes = offset + Math.max(16, Math.ceil(c.params.byteLength / 16) * 16);
      return offset;
    });
    const image = new Uint8Array(Math.ceil(bytes / 4) * 4);
    const uniform = bytes > 0 ? this.gpu.buffer(`${this.label} plan params`, bytes, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST) : null;
    const items: PlanItem[] = captured.map((c, i) => {
      if (!('pipeline' in c)) return c;
      const entries: GPUBindGroupEntry[] = [];
      let binding = 0;
      if (c.params) {
        image.set(c.params, offsets[i]);
        entries.push({ binding: binding++, resource: { buffer: uniform!, offset: offsets[i], size: Math.max(16, Math.ceil(c.params.byteLength / 16) * 16) } });
      }
      for (const b of c.buffers) entries.push({ binding: binding++, resource: 'buffer' in b ? b : { buffer: b } });
      const group = this.gpu.device.createBindGroup({ label: c.pipeline.label, layout: this.layout(c.pipeline), entries });
      return { pipeline: c.pipeline, group, x: c.workgroups[0], y: c.workgroups[1], z: c.workgroups[2] };
    });
    if (uniform) this.gpu.write(uniform, image);
    return new StepPlan(this.gpu, items, uniform, this.dispatches);
  }

  /** Records a plan's commands (see StepPlan), with the early submits of this encoder. */
  replay(plan: StepPlan): void {
    if (this.profileSet) {
      this.profile(plan, this.profileSet);
      return;
    }
    for (const it of plan.items) {
      if ('copy' in it) {
        this.copy(...it.copy);
        continue;
      }
      const pass = this.computePass();
      if (it.pipeline !== this.lastPipeline) {
        pass.setPipeline(it.pipeline);
        this.lastPipeline = it.pipeline;
      }
      pass.setBindGroup(0, it.group);
      pass.dispatchWorkgroups(it.x, it.y, it.z);
      this.dispatches++;
      if (this.flushEvery > 0 && ++this.sinceFlush >= this.flushEvery) this.flush();
    }
  }

  /**
   * Records a plan with each dispatch in a compute pass of its own, timestamps at its beginning and end
   * (query 2i and 2i + 1 of `querySet` for dispatch i): the benchmark's per-kernel GPU times.
   */
  profile(plan: StepPlan, querySet: GPUQuerySet): void {
    let i = 0;
    for (const it of plan.items) {
      if ('copy' in it) {
        this.copy(...it.copy);
        continue;
      }
      this.endPass();
      const pass = this.enc.beginComputePass({ timestampWrites: { querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } });
      pass.setPipeline(it.pipeline);
      pass.setBindGroup(0, it.group);
      pass.dispatchWorkgroups(it.x, it.y, it.z);
      pass.end();
      this.dispatches++;
      i++;
    }
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
    if (this.captured) {
      this.captured.push({ copy: [src, srcOffset, dst, dstOffset, size] });
      return;
    }
    this.endPass();
    this.enc.copyBufferToBuffer(src, srcOffset, dst, dstOffset, size);
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = null;
  }

  /** Writes the parameter arena and submits everything recorded. The encoder cannot be reused. */
  submit(): void {
    if (this.captured) throw new Error('Encoder.submit(): a capturing encoder records nothing; use plan()');
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
