/**
 * One WebGPU device and what the engine needs to know about it. The same class runs in the browser's
 * worker (navigator.gpu) and in Node (the `webgpu` package, see ./node.ts).
 * Every buffer is labelled and counted so memory use can be audited.
 */

export interface GpuCaps {
  subgroups: boolean;
  /** Smallest subgroup the adapter may run (adapter.info; 0 when it does not say). */
  subgroupMinSize: number;
  /** shader-f16 is never required: f16 data is packed in u32 and unpacked in the kernels. */
  shaderF16: boolean;
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
  maxComputeWorkgroupStorageSize: number;
  maxComputeInvocationsPerWorkgroup: number;
  maxComputeWorkgroupsPerDimension: number;
  minUniformBufferOffsetAlignment: number;
  minStorageBufferOffsetAlignment: number;
  adapter: string;
}

export class GpuError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GpuError';
  }
}

export const STORAGE = 0x80 | 0x04 | 0x08; // GPUBufferUsage.STORAGE | COPY_SRC | COPY_DST

export class Gpu {
  readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly live = new Map<GPUBuffer, { label: string; size: number }>();
  private readonly destroyListeners: Array<() => void> = [];
  /** Set when the device is lost; every later call throws it. */
  lost: string | null = null;

  private constructor(
    readonly device: GPUDevice,
    readonly caps: GpuCaps,
  ) {
    device.lost.then((info) => {
      this.lost = `GPU device lost (${info.reason}): ${info.message}`;
    });
  }

  static async create(gpu: GPU | undefined = globalThis.navigator?.gpu): Promise<Gpu> {
    if (!gpu) throw new GpuError('WebGPU is not available here (no navigator.gpu). Use Chrome/Edge 113+, or Firefox/Safari with WebGPU enabled.');
    const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter) throw new GpuError('WebGPU found no adapter on this machine.');
    const wanted: GPUFeatureName[] = ['subgroups', 'shader-f16', 'timestamp-query'];
    const requiredFeatures = wanted.filter((f) => adapter.features.has(f));
    const l = adapter.limits;
    const requiredLimits: Record<string, number> = {
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
    };
    const device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
    const info = adapter.info;
    const caps: GpuCaps = {
      subgroups: device.features.has('subgroups'),
      subgroupMinSize: info.subgroupMinSize ?? 0,
      shaderF16: device.features.has('shader-f16'),
      maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
      maxBufferSize: device.limits.maxBufferSize,
      maxComputeWorkgroupStorageSize: device.limits.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: device.limits.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupsPerDimension: device.limits.maxComputeWorkgroupsPerDimension,
      minUniformBufferOffsetAlignment: device.limits.minUniformBufferOffsetAlignment,
      minStorageBufferOffsetAlignment: device.limits.minStorageBufferOffsetAlignment,
      adapter: [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ') || 'unknown adapter',
    };
    return new Gpu(device, caps);
  }

  check(): void {
    if (this.lost) throw new GpuError(this.lost);
  }

  /** A labelled storage buffer (size rounded up to 16 bytes). */
  buffer(label: string, size: number, usage: number = STORAGE): GPUBuffer {
    this.check();
    const bytes = Math.max(16, Math.ceil(size / 16) * 16);
    if (bytes > this.caps.maxBufferSize) {
      throw new GpuError(`buffer "${label}" needs ${bytes} bytes, over this GPU's maxBufferSize ${this.caps.maxBufferSize}`);
    }
    const buf = this.device.createBuffer({ label, size: bytes, usage });
    this.live.set(buf, { label, size: bytes });
    return buf;
  }

  /** A labelled storage buffer holding `data`. */
  upload(label: string, data: ArrayBufferView, usage: number = STORAGE): GPUBuffer {
    const buf = this.buffer(label, data.byteLength, usage);
    this.write(buf, data);
    return buf;
  }

  write(buf: GPUBuffer, data: ArrayBufferView, offset = 0): void {
    // writeBuffer needs a multiple of 4 bytes.
    const len = Math.ceil(data.byteLength / 4) * 4;
    if (len === data.byteLength) {
      this.device.queue.writeBuffer(buf, offset, data.buffer, data.byteOffset, data.byteLength);
    } else {
      const padded = new Uint8Array(len);
      padded.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      this.device.queue.writeBuffer(buf, offset, padded);
    }
  }

  destroy(buf: GPUBuffer): void {
    this.live.delete(buf);
    buf.destroy();
    for (const f of this.destroyListeners) f();
  }

  /** Calls `f` after every destroy() (the encoder drops its cached bind groups then). */
  onDestroy(f: () => void): void {
    this.destroyListeners.push(f);
  }

  /** Bytes held by live buffers whose label starts with `prefix` (all when omitted). */
  bytes(prefix = ''): number {
    let n = 0;
    for (const b of this.live.values()) if (b.label.startsWith(prefix)) n += b.size;
    return n;
  }

  /** A compute pipeline, compiled once per (label, code, constants). */
  pipeline(label: string, code: string, constants?: Record<string, number>): GPUComputePipeline {
    const key = `${label}\u0000${code.length}\u0000${JSON.stringify(constants ?? {})}`;
    let p = this.pipelines.get(key);
    if (!p) {
      this.check();
      const module = this.device.createShaderModule({ label, code });
      p = this.device.createComputePipeline({ label, layout: 'auto', compute: { module, entryPoint: 'main', constants } });
      this.pipelines.set(key, p);
    }
    return p;
  }

  /** Copies `size` bytes of `buf` from `offset` back to the CPU. */
  async read(buf: GPUBuffer, offset = 0, size = buf.size - offset): Promise<ArrayBuffer> {
    this.check();
    const staging = this.device.createBuffer({ label: `readback ${buf.label}`, size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const enc = this.device.createCommandEncoder({ label: 'readback' });
    enc.copyBufferToBuffer(buf, offset, staging, 0, size);
    this.device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const out = staging.getMappedRange().slice(0);
    staging.destroy();
    return out;
  }

  async readF32(buf: GPUBuffer, count?: number, offsetElems = 0): Promise<Float32Array> {
    return new Float32Array(await this.read(buf, offsetElems * 4, (count ?? buf.size / 4 - offsetElems) * 4));
  }

  async readU32(buf: GPUBuffer, count?: number, offsetElems = 0): Promise<Uint32Array> {
    return new Uint32Array(await this.read(buf, offsetElems * 4, (count ?? buf.size / 4 - offsetElems) * 4));
  }

  /** Rejects with a clear error if validation or out-of-memory errors happened inside `fn`. */
  async guarded<T>(what: string, fn: () => T | Promise<T>): Promise<T> {
    this.device.pushErrorScope('out-of-memory');
    this.device.pushErrorScope('validation');
    let result: T;
    try {
      result = await fn();
    } finally {
      const validation = await this.device.popErrorScope();
      const oom = await this.device.popErrorScope();
      if (oom) throw new GpuError(`${what}: the GPU ran out of memory (${oom.message})`);
      if (validation) throw new GpuError(`${what}: ${validation.message}`);
    }
    return result;
  }
}
