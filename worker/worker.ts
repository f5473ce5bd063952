/**
 * The model worker: one Engine per worker, exposed to the page through Comlink as {@link WorkerApi}.
 * The page creates it with `new Worker(new URL('../worker/worker.ts', import.meta.url), { type: 'module' })`.
 * Errors thrown here reach the page as Errors with the same message (Comlink serialises them), so
 * every message is written for the person using the page.
 */
import * as Comlink from 'comlink';
import { Gpu } from './gpu/context';
import { Engine } from './engine/engine';
import { resolveModelUrl } from './load/source';
import { deleteModel, listModels } from './store';
import { loadModel } from './load/load-model';
import { ChatSession } from './chat-session';
import { generateChains } from './hyperscale/chains';
import { describeModel } from './load/model-origin';
import type { ChatDelta, ChatRequest, ChatResult, KvResidency, KvStats, LoadProgress, LoadRequest, ModelInfo, ModelOrigin, StoredModelInfo, WorkerApi } from './protocol';

/** Where the embedded model lives, relative to this script (dev: /worker/, build: /assets/). */
const DEFAULT_MODEL_PATH = '../models/webdms-default/';
const PROGRESS_INTERVAL_MS = 100;

export const NO_WEBGPU =
  'WebGPU is not available in this browser, and WebDMS needs it to run the model on your GPU. ' +
  'It works in Chrome or Edge 113+ (Windows, macOS, ChromeOS; Android 121+), Safari 26+ (macOS, iOS, iPadOS) ' +
  'and Firefox 141+ on Windows. On Linux, Chrome needs chrome://flags/#enable-unsafe-webgpu.';
export const NO_ADAPTER =
  'WebGPU is present but found no usable GPU. Hardware acceleration may be turned off, or this GPU is blocklisted ' +
  '(see chrome://gpu). Try Chrome or Edge with hardware acceleration enabled.';

let gpu: Gpu | null = null;
let engine: Engine | null = null;
let session: ChatSession | null = null;
/** What `engine` is (WorkerApi.current). */
let engineInfo: ModelInfo | null = null;
/**
 * A model with at most this many bytes of weights on the GPU stays loaded (and usable) while the next one
 * loads, and stays if that load fails. A bigger one is let go once the new model's address answered, so two
 * big models are never on the GPU at once; a load that fails offline or at the address still keeps it.
 */
export const KEEP_WHILE_LOADING_BYTES = 512 * 1024 * 1024;
/** Bumped by every load and unload, so a load that was overtaken cleans up after itself. */
let generation = 0;
/** Aborts the load in progress (a model streaming from the network stops downloading at once). */
let loading: AbortController | null = null;

function cancelLoad(): void {
  loading?.abort(new DOMException('The load was cancelled by a newer request.', 'AbortError'));
  loading = null;
}

/** The model's base URL (ending in '/') for a LoadRequest.model. */
export function modelBaseUrl(model: string): string {
  const spec = model.trim();
  // Relative to this module's own URL, not self.location: the widget may start this worker from a blob: URL.
  if (spec === '' || spec === 'default') return new URL(DEFAULT_MODEL_PATH, import.meta.url).href;
  // 'org/name' (a Hugging Face repo id), optionally 'org/name@revision'.
  if (/^[\w.-]+\/[\w.-]+(@[\w.-]+)?$/.test(spec)) return ensureSlash(resolveModelUrl(spec));
  let url: URL;
  try {
    url = new URL(spec, import.meta.url);
  } catch {
    throw new Error(`"${spec}" is neither a Hugging Face repo id (org/name) nor a URL.`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`Only http(s) model URLs can be loaded, not ${url.protocol}`);
  return ensureSlash(url.href);
}

function ensureSlash(u: string): string {
  return u.endsWith('/') ? u : `${u}/`;
}

async function getGpu(): Promise<Gpu> {
  if (gpu && !gpu.lost) return gpu;
  const nav = self.navigator as Navigator & { gpu?: GPU };
  if (!nav.gpu) throw new Error(NO_WEBGPU);
  const adapter = await nav.gpu.requestAdapter({ powerPreference: 'high-performance' }).catch(() => null);
  if (!adapter) throw new Error(NO_ADAPTER);
  gpu = await Gpu.create(nav.gpu);
  return gpu;
}

/**
 * Checks the model's config.json first, so a wrong address fails with its URL and HTTP status, and a
 * server that answers every path with its index.html is not taken for a model. Skipped when the
 * network is unreachable: the weight store may hold the model (offline use).
 */
async function preflight(base: string): Promise<void> {
  const url = `${base}config.json`;
  let res: Response;
  try {
    res = await fetch(url, { method: 'GET', cache: 'no-cache' });
  } catch {
    return;
  }
  if (!res.ok) {
    const hint = res.status === 404 ? ' There is no model at this address.' : res.status === 401 || res.status === 403 ? ' The model is private or gated.' : '';
    throw new Error(`Loading the model failed: GET ${url} returned HTTP ${res.status} ${res.statusText}.${hint}`);
  }
  const type = res.headers.get('content-type') ?? '';
  await res.body?.cancel().catch(() => undefined);
  // Single-page-app servers answer every path with index.html.
  if (type.includes('text/html')) throw new Error(`Loading the model failed: GET ${url} returned a web page, not config.json. There is no model at this address.`);
}

function throttle(cb: ((p: LoadProgress) => void) | undefined): (p: LoadProgress) => void {
  let last = 0;
  let lastPhase = '';
  return (p) => {
    if (!cb) return;
    const now = performance.now();
    if (p.phase !== lastPhase || p.phase === 'ready' || p.loadedBytes >= p.totalBytes || now - last >= PROGRESS_INTERVAL_MS) {
      last = now;
      lastPhase = p.phase;
      // The callback is a Comlink proxy; do not let a closed page break the load.
      Promise.resolve(cb({ ...p })).catch(() => undefined);
    }
  };
}

function dropEngine(): void {
  session?.abort();
  session = null;
  try {
    engine?.destroy();
  } catch {
    /* already gone */
  }
  engine = null;
  engineInfo = null;
}

const api: WorkerApi = {
  async load(req: LoadRequest, onProgress?: (p: LoadProgress) => void, onDeviceLost?: (message: string) => void): Promise<ModelInfo> {
    const mine = ++generation;
    cancelLoad();
    const ctl = (loading = new AbortController());
    // The model loaded now stays until the new one is ready (see KEEP_WHILE_LOADING_BYTES).
    session?.abort();
    const base = modelBaseUrl(req.model);
    const g = await getGpu();
    await preflight(base);
    if (mine !== generation) throw new Error('The load was cancelled by a newer request.');
    if (engineInfo && engineInfo.weightBytes > KEEP_WHILE_LOADING_BYTES) dropEngine();
    let e: Engine;
    let info: ModelInfo;
    try {
      ({ engine: e, info } = await loadModel(g, base, req, { spec: req.model.trim() || 'default', onProgress: throttle(onProgress), signal: ctl.signal }));
    } catch (err) {
      if (ctl.signal.aborted) throw ctl.signal.reason;
      const name = (err as Error)?.name ?? 'Error';
      // Some browser errors (a DOMException from IndexedDB) carry an empty message.
      const msg = (err as Error)?.message || `${name}${String(err) && String(err) !== name ? `: ${String(err)}` : ''}`;
      const out = new Error(msg.includes(base) ? msg : `Loading the model from ${base} failed: ${msg}`);
      // Comlink keeps an Error's name: the page tells a full disk (StorageQuotaError) from other failures by it.
      out.name = name;
      throw out;
    }
    if (mine !== generation) {
      e.destroy();
      throw new Error('The load was cancelled by a newer request.');
    }
    // The new model is ready: the old one goes now.
    dropEngine();
    if (loading === ctl) loading = null;
    engine = e;
    engineInfo = info;
    const chains = Math.max(1, Math.floor(req.chains ?? 1));
    session = new ChatSession(e, (ids, o) => generateChains(e, ids, o), chains);
    // A lost device takes the model with it: tell the page, which reloads it on the next message.
    g.device.lost.then((lost) => {
      if (engine !== e) return;
      dropEngine();
      Promise.resolve(onDeviceLost?.(`The GPU device was lost (${lost.reason}${lost.message ? `: ${lost.message}` : ''})`)).catch(() => undefined);
    });
    return info;
  },

  async chat(req: ChatRequest, onDelta: (d: ChatDelta) => void): Promise<ChatResult> {
    if (gpu?.lost && !engine) throw new Error(`${gpu.lost}. Load the model again.`);
    if (!session) throw new Error('No model is loaded yet.');
    return session.chat(req, (d) => {
      Promise.resolve(onDelta(d)).catch(() => undefined);
    });
  },

  abort(): void {
    session?.abort();
  },

  async current(): Promise<ModelInfo | null> {
    return engineInfo;
  },

  async kvStats(): Promise<KvStats | null> {
    return engine ? engine.kvStats() : null;
  },

  async kvResidency(): Promise<KvResidency | null> {
    if (!engine) return null;
    const r = await engine.kvResidency();
    return Comlink.transfer(r, [r.bits.buffer]);
  },

  async unload(): Promise<void> {
    generation++;
    cancelLoad();
    dropEngine();
  },

  async listStored(): Promise<StoredModelInfo[]> {
    return (await listModels()).map((m) => ({ id: m.id, name: m.name, bytes: m.bytes, storedBytes: m.storedBytes, complete: m.complete, lastUsed: m.lastUsed, weights: m.weights }));
  },

  async deleteStored(id: string): Promise<void> {
    await deleteModel(id);
  },

  async describeModel(model: string): Promise<ModelOrigin> {
    return describeModel(modelBaseUrl(model));
  },
};

Comlink.expose(api);
