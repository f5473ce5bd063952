/**
 * The weight store in a module Web Worker (as the model worker uses it), driven by the e2e harness
 * page. Every result is a plain object, errors included, so the test sees their names and numbers.
 */
import * as Comlink from 'comlink';
import type { ModelSource } from '../../worker/load/source';
import { Sha256, deleteAll, deleteModel, listModels, openModelSource, type OpenModelOptions, type StoreProgress } from '../../worker/store';

export interface FileDigest {
  name: string;
  size: number;
  sha256: string;
}

export type OpenResult =
  | { ok: true; stored: boolean; fromStorage?: boolean; warning?: string; persisted?: boolean | null; files: FileDigest[]; progress: StoreProgress[]; reads: number }
  | { ok: false; error: Record<string, unknown>; progress: StoreProgress[] };

const FILES = [
  'config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'chat_template.jinja',
  'model.safetensors', 'model.safetensors.index.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors',
];

function plainError(e: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = { name: (e as Error)?.name, message: (e as Error)?.message ?? String(e) };
  for (const [k, v] of Object.entries(e as object)) {
    if (typeof v !== 'function') out[k] = v;
  }
  return out;
}

/** Reads each file the way the engine does (byte ranges), hashing as it goes. */
async function digestAll(src: ModelSource): Promise<{ files: FileDigest[]; reads: number }> {
  const files: FileDigest[] = [];
  let reads = 0;
  for (const name of FILES) {
    if (!(await src.exists(name))) continue;
    const size = await src.size(name);
    const h = new Sha256();
    const step = 50_000;
    for (let off = 0; off < size; off += step) {
      h.update(await src.read(name, off, Math.min(step, size - off)));
      reads++;
    }
    files.push({ name, size, sha256: h.hex() });
  }
  return { files, reads };
}

const api = {
  async open(spec: string, opts: Omit<OpenModelOptions, 'onProgress' | 'backend' | 'fetchImpl'> = {}): Promise<OpenResult> {
    const progress: StoreProgress[] = [];
    try {
      const src = await openModelSource(spec, { ...opts, onProgress: (p) => progress.push({ ...p }) });
      const s = src as ModelSource & { stored: boolean; fromStorage?: boolean; warning?: string; persisted?: boolean | null };
      const { files, reads } = await digestAll(src);
      return { ok: true, stored: s.stored, fromStorage: s.fromStorage, warning: s.warning, persisted: s.persisted, files, progress, reads };
    } catch (e) {
      return { ok: false, error: plainError(e), progress };
    }
  },
  list: () => listModels(),
  del: (id: string) => deleteModel(id),
  delAll: () => deleteAll(),
  isWorker: () => typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !== 'undefined' && typeof (globalThis as { document?: unknown }).document === 'undefined',
};

export type StoreWorkerApi = typeof api;
Comlink.expose(api);
