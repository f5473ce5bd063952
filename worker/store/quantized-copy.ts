/**
 * Quantized copies: the weight store's form of a plain checkpoint that runs quantized (q8/q4).
 *
 * The first start streams the checkpoint's bf16/f16/f32 shards from the network onto the GPU, where
 * they are quantized as they arrive (nothing of the original is stored), then writes the quantized
 * weights back out in the converted form (worker/load/converted.ts) into the store, under the key
 * `<base>#webdms-<format>`. The next start reads only those bytes: ~4.6 GB for an 8B model at q4,
 * not 16 GB. The copy records the checkpoint's version (commit, ETag or config.json hash); when the
 * remote version changes the copy is stale and is rebuilt, offline it is served with a warning.
 */
import { COPIED_FILES, type ConvertedManifest, type ConvertSink } from '../load/converted';
import type { WeightFormat } from '../model/types';
import { idbStoreBackend, type StoreBackend } from './backend';
import { StorageQuotaError, formatBytes, isQuotaExceeded } from './errors';
import { deleteModel } from './library';
import {
  chunkKey, fileKey, fileRecordKey, modelRecordKey, pendingRecordKey, revisionOf,
  type FileEntry, type FileRecord, type Manifest,
} from './records';
import { Remote } from './remote';
import { Sha256, sha256Hex } from './sha256';
import {
  DEFAULT_CHUNK_SIZE, StoredSource, errorText, quotaError, remoteVersion, sameVersion, storageNumbers, storeChunk, weightFilesId,
  type Ctx, type RemoteVersion, type StoreOpenOptions,
} from './stored-source';

/** The formats whose stored copy is the quantized one (smaller than the checkpoint by 2x to 4x). */
export const QUANTIZED_FORMATS: readonly WeightFormat[] = ['q4', 'q8'];

export const quantizedKey = (base: string, format: WeightFormat): string => `${base}#webdms-${format}`;

export type QuantizedCopyOptions = Pick<StoreOpenOptions, 'backend' | 'fetchImpl' | 'headers' | 'revalidateTimeoutMs' | 'cacheChunks' | 'chunkSize' | 'spec'>;

function context(base: string, format: WeightFormat, opts: QuantizedCopyOptions): Ctx & { backend: StoreBackend } {
  const remote = new Remote(base, { fetch: opts.fetchImpl, headers: opts.headers, stallTimeoutMs: opts.revalidateTimeoutMs ?? 10_000 });
  return { backend: opts.backend ?? idbStoreBackend(), remote, opts, key: quantizedKey(remote.base, format) };
}

/**
 * The checkpoint's version at `base` (one HEAD of config.json, and of the weight files when there is no
 * commit), or null when the server cannot be
 * reached; other errors (404, a web page instead of config.json) are thrown.
 */
export async function checkpointVersion(base: string, opts: QuantizedCopyOptions = {}): Promise<RemoteVersion | null> {
  const remote = new Remote(base, { fetch: opts.fetchImpl, headers: opts.headers, stallTimeoutMs: opts.revalidateTimeoutMs ?? 10_000 });
  try {
    const v = await remoteVersion(remote);
    // Without a commit, config.json's identity does not cover the weights (static hosting): add theirs.
    if (!v.commit) v.weights = await weightFilesId(remote);
    return v;
  } catch (e) {
    if ((e as { network?: boolean }).network) return null;
    throw e;
  }
}

/**
 * The stored quantized copy of the checkpoint at `base` in the first of `formats` that has a complete
 * one, served from storage; null when there is none, or it was made from another version than
 * `version`. With `version` null (offline) a copy is served with `warning` set.
 */
export async function openQuantizedCopy(
  base: string, formats: readonly WeightFormat[], version: RemoteVersion | null, opts: QuantizedCopyOptions = {},
): Promise<(StoredSource & { weights: WeightFormat }) | null> {
  for (const format of formats) {
    const ctx = context(base, format, opts);
    const src = await ctx.backend.withLock(`webdms-weights:${ctx.key}`, async () => {
      const m = await ctx.backend.meta.get<Manifest>(modelRecordKey(ctx.key));
      if (!m?.complete || !m.quantized) return null;
      if (version && !sameVersion(m, version)) return null;
      m.lastUsed = Date.now();
      await ctx.backend.meta.set(modelRecordKey(ctx.key), m);
      const s = await StoredSource.fromManifest(m, ctx);
      s.fromStorage = true;
      s.persisted = await ctx.backend.persisted();
      if (!version) s.warning = `Using the stored ${format} copy without checking ${m.base} for updates (the server could not be reached).`;
      return s;
    }).catch(() => null); // a damaged record: rebuilt like a missing copy
    if (src) return Object.assign(src, { weights: format });
  }
  return null;
}

/**
 * Throws StorageQuotaError (with the numbers and the other stored models) when `bytes` of quantized
 * copy cannot fit the browser's quota; the caller decides whether to run without storing.
 */
export async function checkQuantizedQuota(base: string, format: WeightFormat, bytes: number, opts: QuantizedCopyOptions = {}): Promise<void> {
  const ctx = context(base, format, opts);
  const { available } = await storageNumbers(ctx.backend);
  if (Number.isFinite(available) && bytes * 1.01 + 1048576 > available) throw await quotaError(ctx, bytes, bytes);
}

export interface SaveProgress {
  storedBytes: number;
  totalBytes: number;
}

/**
 * Stores a quantized copy: `write` gets a ConvertSink (Engine.exportConverted writes into it) whose
 * files become the stored model `<base>#webdms-<format>`, marked with the checkpoint's `version`.
 * An older copy under that key is replaced; a failed write leaves nothing behind. `expectedBytes`
 * is the size for progress and the quota check (the pre-flight's weight bytes).
 */
export async function saveQuantizedCopy(
  base: string, format: WeightFormat, version: RemoteVersion, expectedBytes: number,
  write: (sink: ConvertSink) => Promise<ConvertedManifest>,
  opts: QuantizedCopyOptions & { onProgress?: (p: SaveProgress) => void; signal?: AbortSignal } = {},
): Promise<Manifest> {
  const ctx = context(base, format, opts);
  const { backend } = ctx;
  return backend.withLock(`webdms-weights:${ctx.key}`, async () => {
    await deleteModel(ctx.key, { backend, locked: true });
    const sink = new StoreSink(ctx, opts.chunkSize ?? DEFAULT_CHUNK_SIZE, expectedBytes, opts.onProgress, opts.signal);
    try {
      await write(sink);
    } catch (e) {
      await deleteModel(ctx.key, { backend, locked: true }).catch(() => undefined);
      throw e;
    }
    const now = Date.now();
    const m: Manifest = {
      key: ctx.key,
      spec: opts.spec ?? ctx.remote.base,
      base: ctx.remote.base,
      revision: revisionOf(ctx.remote.base),
      commit: version.commit,
      configEtag: version.etag,
      configSha256: version.sha256,
      weightsId: version.weights,
      version: version.commit ?? version.etag ?? version.sha256 ?? `size-${version.info.size}`,
      files: sink.files,
      // The small files the checkpoint does not have (missingCopiedFiles tells an older copy by their absence here).
      absent: COPIED_FILES.filter((f) => !sink.files.some((x) => x.name === f)),
      totalBytes: sink.files.reduce((n, f) => n + f.size, 0),
      createdAt: now,
      lastUsed: now,
      complete: true,
      quantized: { weights: format },
    };
    await backend.meta.set(modelRecordKey(ctx.key), m);
    await backend.meta.del(pendingRecordKey(ctx.key));
    return m;
  });
}

/**
 * The small files (config, tokenizer, dms_metadata.json: COPIED_FILES) a stored copy neither holds nor records
 * as absent: a copy saved by an engine that did not copy them yet.
 */
export function missingCopiedFiles(m: Pick<Manifest, 'files' | 'absent'>): string[] {
  const known = new Set([...m.files.map((f) => f.name), ...(m.absent ?? [])]);
  return COPIED_FILES.filter((f) => !known.has(f));
}

/**
 * Adds to the stored `format` copy of `base` the small files it lacks (missingCopiedFiles) from the server
 * (those the server does not have are recorded as absent), so that an older copy of a FastDMS checkpoint gets
 * its dms_metadata.json without downloading the checkpoint again. Returns whether a file was added.
 */
export async function completeQuantizedCopy(base: string, format: WeightFormat, opts: QuantizedCopyOptions = {}): Promise<boolean> {
  const ctx = context(base, format, opts);
  return ctx.backend.withLock(`webdms-weights:${ctx.key}`, async () => {
    const m = await ctx.backend.meta.get<Manifest>(modelRecordKey(ctx.key));
    if (!m?.complete || !m.quantized) return false;
    const missing = missingCopiedFiles(m);
    if (missing.length === 0) return false;
    const sink = new StoreSink(ctx, opts.chunkSize ?? DEFAULT_CHUNK_SIZE, 0, undefined, undefined, m.files.length);
    const absent = [...(m.absent ?? [])];
    for (const f of missing) {
      const info = await ctx.remote.probe(f);
      if (!info) absent.push(f);
      else await sink.writeFile(f, await ctx.remote.fetchRange(f, 0, info.size, info.size));
    }
    m.files = [...m.files, ...sink.files];
    m.absent = absent;
    m.totalBytes += sink.files.reduce((n, f) => n + f.size, 0);
    await ctx.backend.meta.set(modelRecordKey(ctx.key), m);
    return sink.files.length > 0;
  });
}

/** A ConvertSink into the weight store: files cut into chunks, each hashed and stored as it fills. */
class StoreSink implements ConvertSink {
  readonly files: FileEntry[] = [];
  private file: { entry: FileEntry; sha: Sha256; chunkSha: string[]; buf: Uint8Array; fill: number } | null = null;
  private stored = 0;

  constructor(
    private readonly ctx: Ctx,
    private readonly chunkSize: number,
    private readonly expected: number,
    private readonly onProgress?: (p: SaveProgress) => void,
    private readonly signal?: AbortSignal,
    /** Files the copy already has (their ids are quantized-0 .. quantized-(n-1)). */
    private readonly firstIndex = 0,
  ) {}

  async openShard(name: string): Promise<void> {
    const entry: FileEntry = { name, size: 0, fileId: `quantized-${this.firstIndex + this.files.length}`, chunkSize: this.chunkSize };
    this.file = { entry, sha: new Sha256(), chunkSha: [], buf: new Uint8Array(this.chunkSize), fill: 0 };
  }

  async write(bytes: Uint8Array): Promise<void> {
    this.signal?.throwIfAborted();
    const f = this.file!;
    f.sha.update(bytes);
    f.entry.size += bytes.byteLength;
    let pos = 0;
    while (pos < bytes.byteLength) {
      const take = Math.min(f.buf.length - f.fill, bytes.byteLength - pos);
      f.buf.set(bytes.subarray(pos, pos + take), f.fill);
      f.fill += take;
      pos += take;
      if (f.fill === f.buf.length) await this.flush();
    }
  }

  private async flush(): Promise<void> {
    const f = this.file!;
    if (f.fill === 0) return;
    const bytes = f.fill === f.buf.length ? f.buf : f.buf.slice(0, f.fill);
    const sha = await sha256Hex(bytes);
    const left = Math.max(this.expected - this.stored, bytes.byteLength);
    try {
      await storeChunk(this.ctx, chunkKey(fileKey(this.ctx.key, f.entry), f.chunkSha.length), bytes, sha, this.expected, left);
    } catch (e) {
      if (e instanceof StorageQuotaError || isQuotaExceeded(e)) throw e;
      throw new Error(`Saving the quantized copy failed after ${formatBytes(this.stored)}: ${errorText(e)}`);
    }
    f.chunkSha.push(sha);
    this.stored += bytes.byteLength;
    f.buf = new Uint8Array(this.chunkSize);
    f.fill = 0;
    this.onProgress?.({ storedBytes: this.stored, totalBytes: Math.max(this.expected, this.stored) });
  }

  async closeShard(): Promise<string> {
    await this.flush();
    const f = this.file!;
    const sha256 = f.sha.hex();
    const rec: FileRecord = {
      name: f.entry.name, size: f.entry.size, chunkSize: this.chunkSize, chunks: f.chunkSha.length, chunkSha256: f.chunkSha,
      verified: 'sha256', sha256, completedAt: Date.now(),
    };
    await this.ctx.backend.meta.set(fileRecordKey(fileKey(this.ctx.key, f.entry)), rec);
    this.files.push({ ...f.entry, sha256 });
    this.file = null;
    return sha256;
  }

  async writeFile(name: string, bytes: Uint8Array): Promise<void> {
    await this.openShard(name);
    await this.write(bytes);
    await this.closeShard();
  }
}
