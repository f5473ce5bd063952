/**
 * What the page knows about this browser's WebGPU adapter: its buffer limits (for the presets' fit), its
 * name, and whether it is a software rasterizer (SwiftShader, llvmpipe/lavapipe, WARP), where a model runs
 * one to two orders of magnitude slower than on a GPU. From that, and from the speed measured on the
 * replies so far, an estimate of how fast a model of a given size would decode here.
 */

export interface AdapterFacts {
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
  /** "google swiftshader", "nvidia ampere"…: vendor and architecture as the browser reports them. */
  name: string;
  software: boolean;
}

/**
 * Weight bytes a software adapter streams per second while decoding (one read of the weights per token):
 * the embedded 30 MB model runs at ~0.5-1 tok/s on SwiftShader with 2-4 cores, so ~30 MB/s. Used until a
 * reply on this adapter has measured the real figure.
 */
export const SOFTWARE_BYTES_PER_SECOND = 30e6;
/** On a software adapter, the demo's expected speed (measured on SwiftShader, Chromium, 2 cores). */
export const SOFTWARE_EXPECTED = { decode: '0.5-1 tokens/s', firstToken: '10-30 s' };
/** Below this estimated decode speed a preset is marked too slow to use. */
export const MIN_USABLE_TOKENS_PER_SECOND = 2;

const SOFTWARE_NAMES = /swiftshader|llvmpipe|lavapipe|softpipe|software|basic render|warp/i;

/** Whether an adapter's reported facts name a software rasterizer. */
export function isSoftwareAdapter(info: { vendor?: string; architecture?: string; device?: string; description?: string; isFallbackAdapter?: boolean }): boolean {
  if (info.isFallbackAdapter) return true;
  return SOFTWARE_NAMES.test([info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' '));
}

let facts: Promise<AdapterFacts | null> | null = null;

/** This browser's adapter (asked once). null without WebGPU or an adapter. */
export function adapterFacts(): Promise<AdapterFacts | null> {
  facts ??= (async () => {
    const a = await navigator.gpu?.requestAdapter({ powerPreference: 'high-performance' }).catch(() => null);
    if (!a) return null;
    const info = (a as GPUAdapter & { info?: GPUAdapterInfo & { isFallbackAdapter?: boolean } }).info ?? ({} as GPUAdapterInfo);
    const fallback = (a as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter;
    const name = [info.vendor, info.architecture].filter(Boolean).join(' ') || info.description || 'unknown adapter';
    return {
      maxBufferSize: a.limits.maxBufferSize,
      maxStorageBufferBindingSize: a.limits.maxStorageBufferBindingSize,
      name,
      software: isSoftwareAdapter({ ...info, isFallbackAdapter: info.isFallbackAdapter ?? fallback }),
    };
  })();
  return facts;
}

/** Weight bytes per second measured on this adapter: the best of (decode tok/s × weight bytes) over replies so far. */
let measuredBytesPerSecond = 0;

/** Records a reply's decode speed with the loaded model's weight bytes. */
export function recordDecodeSpeed(tokensPerSecond: number, weightBytes: number): void {
  if (tokensPerSecond > 0 && weightBytes > 0) measuredBytesPerSecond = Math.max(measuredBytesPerSecond, tokensPerSecond * weightBytes);
}

/**
 * Estimated decode speed (tokens/s) of a model with `weightBytes` of weights on this adapter: from the
 * speed measured here when a reply has run, else from the software rate; null on a GPU with nothing measured.
 */
export function estimateTokensPerSecond(weightBytes: number, adapter: AdapterFacts | null): number | null {
  const rate = measuredBytesPerSecond > 0 ? measuredBytesPerSecond : adapter?.software ? SOFTWARE_BYTES_PER_SECOND : 0;
  return rate > 0 && weightBytes > 0 ? rate / weightBytes : null;
}
