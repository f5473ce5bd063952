/** The model library: what is stored, how big, when last used; delete one or all. */
import type { WeightFormat } from '../model/types';
import { idbStoreBackend, type StoreBackend } from './backend';
import { chunkIndexOf, chunkLength, chunkPrefix, fileKey, modelRecordKey, pendingRecordKey, type Manifest } from './records';

export interface StoredModel {
  /** Pass to deleteModel(). The model's base URL. */
  id: string;
  /** What the user asked for ('default', 'org/name', a URL). */
  name: string;
  baseUrl: string;
  revision?: string;
  commit?: string;
  version: string;
  /** The model's size when complete. */
  bytes: number;
  /** Bytes stored now (less than `bytes` while a download is unfinished). */
  storedBytes: number;
  /** False while a download is unfinished (it resumes on the next load). */
  complete: boolean;
  files: number;
  createdAt: number;
  /** Last time it was loaded (ms since the epoch). */
  lastUsed: number;
  /** Set for a quantized copy (worker/store/quantized-copy.ts): its format. */
  weights?: WeightFormat;
}

export interface LibraryOptions {
  backend?: StoreBackend;
}

async function storedBytes(backend: StoreBackend, m: Manifest): Promise<number> {
  let n = 0;
  for (const f of m.files) {
    for (const k of await backend.chunks.keys(chunkPrefix(fileKey(m.key, f)))) n += chunkLength(f.size, f.chunkSize, chunkIndexOf(k));
  }
  return n;
}

/** Every stored model (complete, or with a download in progress), most recently used first. */
export async function listModels(opts: LibraryOptions = {}): Promise<StoredModel[]> {
  const backend = opts.backend ?? idbStoreBackend();
  const out = new Map<string, StoredModel>();
  for (const prefix of ['model:', 'pending:']) {
    for (const k of await backend.meta.keys(prefix)) {
      const m = await backend.meta.get<Manifest>(k);
      if (!m || out.has(m.key)) continue; // a complete version wins over an update in progress
      out.set(m.key, {
        id: m.key,
        name: m.spec,
        baseUrl: m.base,
        revision: m.revision,
        commit: m.commit,
        version: m.version,
        bytes: m.totalBytes,
        storedBytes: await storedBytes(backend, m),
        complete: prefix === 'model:',
        files: m.files.length,
        createdAt: m.createdAt,
        lastUsed: m.lastUsed,
        weights: m.quantized?.weights,
      });
    }
  }
  return [...out.values()].sort((a, b) => b.lastUsed - a.lastUsed);
}

/** Deletes one model: its versions, an unfinished download, every chunk. */
export async function deleteModel(id: string, opts: LibraryOptions & { /** @internal the caller holds the model's lock */ locked?: boolean } = {}): Promise<void> {
  const backend = opts.backend ?? idbStoreBackend();
  const run = async () => {
    await backend.meta.del(modelRecordKey(id));
    await backend.meta.del(pendingRecordKey(id));
    await backend.meta.delPrefix(`file:${id}|`);
    await backend.chunks.delPrefix(`${id}|`);
  };
  if (opts.locked) await run();
  else await backend.withLock(`webdms-weights:${id}`, run);
}

/** Deletes every stored model. */
export async function deleteAll(opts: LibraryOptions = {}): Promise<void> {
  const backend = opts.backend ?? idbStoreBackend();
  await backend.chunks.clear();
  await backend.meta.clear();
}
