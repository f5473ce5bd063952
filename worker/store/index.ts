/**
 * The weight store: models downloaded once into IndexedDB, checked, resumable, listed and deletable.
 * See docs/weight-store.md. Everything here runs in a Web Worker.
 */
import { resolveModelUrl, type ModelSource } from '../load/source';
import { MemorySource, StoredSource, type StoreOpenOptions } from './stored-source';

export { StoredSource, MemorySource, DEFAULT_CHUNK_SIZE, OPTIONAL_FILES } from './stored-source';
export type { StoreOpenOptions, StoreProgress } from './stored-source';
export { listModels, deleteModel, deleteAll } from './library';
export type { StoredModel, LibraryOptions } from './library';
export { StorageQuotaError, IntegrityError, StorageUnavailableError, formatBytes } from './errors';
export { idbStoreBackend, requestPersistentStorage, type StoreBackend, type KeyValueStore } from './backend';
export { Sha256, sha256Hex } from './sha256';

/** Where the embedded default model is served, under the app's base URL. */
export const DEFAULT_MODEL_DIR = 'models/webdms-default/';

export interface OpenModelOptions extends StoreOpenOptions {
  /** The app's base URL, for 'default' (default: Vite's BASE_URL on this origin). */
  appBase?: string;
}

/**
 * The app's base URL, from this module's own URL (not self.location: the widget may start the worker
 * from a blob: URL). With an absolute Vite base ('/' in dev, '/app/') it is that path on this origin;
 * with a relative base ('./' in a build) this code is bundled into a worker chunk one folder below the
 * app (assets/), so the app is '../'.
 */
function appBaseUrl(): string {
  const base = import.meta.env?.BASE_URL ?? '/';
  return base.startsWith('/') || /^https?:/.test(base) ? new URL(base, import.meta.url).href : new URL('../', import.meta.url).href;
}

/** The base URL (ending in '/') of a model spec: 'default', 'org/name[@revision]', or a URL. */
export function modelBase(spec: string, appBase?: string): string {
  const s = spec.trim();
  if (s === '' || s === 'default') return new URL(DEFAULT_MODEL_DIR, appBase ?? appBaseUrl()).href;
  if (/^https?:\/\//i.test(s)) return resolveModelUrl(s);
  if (!/^[\w.-]+\/[\w.-]+(@[^\s@]+)?$/.test(s)) {
    // A URL, possibly relative to the app.
    return resolveModelUrl(new URL(s, appBase ?? appBaseUrl()).href);
  }
  return resolveModelUrl(s);
}

/**
 * The source the engine reads a model from: stored in IndexedDB (downloaded first when needed), or,
 * with `memoryFallback` when storing is impossible, straight from the network.
 */
export async function openModelSource(spec: string, opts: OpenModelOptions = {}): Promise<ModelSource & { stored: boolean }> {
  const base = modelBase(spec, opts.appBase);
  const src: StoredSource | MemorySource = await StoredSource.open(base, { ...opts, spec: opts.spec ?? (spec.trim() || 'default') });
  return src;
}
