/**
 * StoredSource: a ModelSource served from IndexedDB, filled from the network once.
 *
 * `StoredSource.open(base)` checks the remote version (one HEAD of config.json), downloads what is
 * missing or corrupt in chunks with parallel Range requests (resuming a download that stopped), checks
 * sizes and SHA-256, and only then marks files and the model complete. Reads come from the stored
 * chunks, one chunk at a time, each checked against its recorded hash the first time it is read.
 */
import { checkModelFileName } from '../load/file-name';
import { HttpSource, ModelLoadError, checkRange, type ModelSource } from '../load/source';
import type { LoadProgress } from '../protocol';
import { idbStoreBackend, type StoreBackend } from './backend';
import { deleteModel, listModels } from './library';
import { IntegrityError, StorageQuotaError, StorageUnavailableError, formatBytes, isQuotaExceeded } from './errors';
import {
  chunkCount, chunkIndexOf, chunkKey, chunkLength, chunkPrefix, fileIdFor, fileKey, fileRecordKey, modelRecordKey,
  pendingRecordKey, revisionOf, type ChunkRecord, type FileEntry, type FileRecord, type Manifest,
} from './records';
import { FetchError, Remote, WholeBody, type RemoteFileInfo } from './remote';
import { Sha256, sha256Hex } from './sha256';

/** LoadProgress plus file counts. */
export interface StoreProgress extends LoadProgress {
  filesDone: number;
  filesTotal: number;
  /** True when everything came from storage (nothing downloaded). */
  fromStorage?: boolean;
}

export interface StoreOpenOptions {
  /** What the user asked for, kept for the library listing (default: the base URL). */
  spec?: string;
  onProgress?: (p: StoreProgress) => void;
  /** Ask the browser to keep the data (navigator.storage.persist(); windows only). Default true. */
  persist?: boolean;
  /** When the model cannot be stored (quota, no IndexedDB), run it from the network instead of throwing. */
  memoryFallback?: boolean;
  fetchImpl?: typeof fetch;
  headers?: Record<string, string>;
  /** Storage backend (tests); IndexedDB by default. */
  backend?: StoreBackend;
  /** Bytes per stored chunk (default 16 MiB). */
  chunkSize?: number;
  /** Concurrent Range requests (default 4). */
  parallel?: number;
  /** Attempts per chunk after the first (default 4), with backoff from retryDelayMs (default 500). */
  retries?: number;
  retryDelayMs?: number;
  /** A request with no progress for this long is aborted and retried (default 30 s). */
  stallTimeoutMs?: number;
  /** How long the version check at open may take before the stored copy is used (default 10 s). */
  revalidateTimeoutMs?: number;
  /** Check the remote version when a complete copy is stored (default true). */
  revalidate?: boolean;
  /** Files the engine may read besides the standard set. */
  extraFiles?: string[];
  /** Chunks kept decoded in memory for reads (default 2). */
  cacheChunks?: number;
  /**
   * Ask the Hub's API (`/api/models/<repo>/tree/<revision>`) for the SHA-256 of LFS files. Default:
   * on for huggingface.co resolve URLs.
   */
  hubApi?: boolean;
}

export const DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024;

/** Files the engine reads: config.json (required), optional JSON/tokenizer files, then the weights. */
export const OPTIONAL_FILES = [
  'generation_config.json',
  // FastDMS packaging: the DMS settings beside the weights (kept, so an offline reload keeps DMS).
  'dms_metadata.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'chat_template.jinja',
  'chat_template.json',
];
const SINGLE = 'model.safetensors';
const INDEX = 'model.safetensors.index.json';
/** The manifest of a converted model (MANIFEST_FILE in worker/load/converted.ts); it lists the weight shards. */
const CONVERTED_MANIFEST = 'webdms-manifest.json';

/** The stored model served from memory when storing was impossible. */
export class MemorySource extends HttpSource {
  readonly stored = false;
  constructor(base: string, readonly reason: Error, opts: ConstructorParameters<typeof HttpSource>[1]) {
    super(base, opts);
  }
}

/** A download in progress: counts bytes and reports progress (at most every 100 ms). */
class Progress {
  private loaded = 0;
  private filesDone = 0;
  private last = 0;
  private readonly samples: [number, number][] = [];
  file?: string;
  constructor(
    private readonly total: number,
    private readonly filesTotal: number,
    private readonly cb?: (p: StoreProgress) => void,
  ) {}
  add(bytes: number, file?: string): void {
    this.loaded += bytes;
    const changed = !!file && file !== this.file;
    if (file) this.file = file;
    this.emit(changed);
  }
  /** Everything is already stored. */
  allStored(): void {
    this.loaded = this.total;
    this.filesDone = this.filesTotal;
    this.emit(true, true);
  }
  fileDone(): void {
    this.filesDone++;
    this.emit(true);
  }
  emit(force: boolean, fromStorage?: boolean): void {
    if (!this.cb) return;
    const now = Date.now();
    this.samples.push([now, this.loaded]);
    while (this.samples.length > 2 && now - this.samples[0][0] > 1000) this.samples.shift();
    if (!force && now - this.last < 100) return;
    this.last = now;
    const [t0, b0] = this.samples[0];
    const dt = (now - t0) / 1000;
    const p: StoreProgress = {
      phase: 'fetch',
      file: this.file,
      loadedBytes: this.loaded,
      totalBytes: this.total,
      filesDone: this.filesDone,
      filesTotal: this.filesTotal,
    };
    if (dt > 0) p.bytesPerSecond = Math.round((this.loaded - b0) / dt);
    if (fromStorage) p.fromStorage = true;
    try {
      this.cb(p);
    } catch {
      /* a progress listener must not break the download */
    }
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function errorText(e: unknown): string {
  return (e as Error)?.message ?? String(e);
}

/** What the store's functions share for one model: its key, the storage, the remote and the options. */
export interface Ctx {
  backend: StoreBackend;
  remote: Remote;
  opts: StoreOpenOptions;
  key: string;
}

export class StoredSource implements ModelSource {
  readonly stored = true;
  readonly name: string;
  /** Set when the stored copy is served although the remote could not be checked or updated. */
  warning?: string;
  /** Whether the browser promised not to evict the data (null: unknown). */
  persisted: boolean | null = null;
  /** True when nothing had to be downloaded. */
  fromStorage = false;
  /** Bytes this open downloaded (0 when everything was stored already). */
  downloadedBytes = 0;
  private readonly files: Map<string, FileEntry>;
  private readonly cache = new Map<string, Uint8Array>();
  private readonly inflight = new Map<string, Promise<Uint8Array>>();
  private readonly verified = new Set<string>();
  private readonly cacheChunks: number;

  private constructor(
    readonly manifest: Manifest,
    private readonly ctx: Ctx,
    /** Each file's record (its chunk hashes), read once at open: reads check chunks against these. */
    private readonly records: Map<string, FileRecord>,
  ) {
    this.name = manifest.base;
    this.files = new Map(manifest.files.map((f) => [f.name, f]));
    this.cacheChunks = Math.max(1, ctx.opts.cacheChunks ?? 2);
  }

  /**
   * Opens a model by base URL (or repo id): downloads what is missing, then serves it from storage.
   * Throws ModelLoadError (404, network, CORS), IntegrityError, StorageQuotaError or StorageUnavailableError;
   * with `memoryFallback`, the last two give a MemorySource instead.
   */
  static async open(baseUrl: string, opts: StoreOpenOptions = {}): Promise<StoredSource | MemorySource> {
    const remote = new Remote(baseUrl, { fetch: opts.fetchImpl, headers: opts.headers, stallTimeoutMs: opts.stallTimeoutMs });
    const fallback = (e: Error): MemorySource => new MemorySource(remote.base, e, { fetch: opts.fetchImpl, headers: opts.headers });
    let backend: StoreBackend;
    try {
      backend = opts.backend ?? idbStoreBackend();
      await backend.meta.get('probe'); // opening the database fails here when IndexedDB is blocked
    } catch (e) {
      const err = new StorageUnavailableError(e);
      if (opts.memoryFallback) return fallback(err);
      throw err;
    }
    const ctx: Ctx = { backend, remote, opts, key: remote.base };
    try {
      return await backend.withLock(`webdms-weights:${ctx.key}`, () => openLocked(ctx));
    } catch (e) {
      // A write the browser refused outright (a DOMException QuotaExceededError from a record, not a chunk) is a full disk too.
      const full = e instanceof StorageQuotaError || isQuotaExceeded(e);
      if (opts.memoryFallback && (full || e instanceof StorageUnavailableError)) {
        // Running from memory instead: give back the space an unfinished download of this model holds.
        await backend.withLock(`webdms-weights:${ctx.key}`, async () => {
          if (!(await backend.meta.get(modelRecordKey(ctx.key)))) await deleteModel(ctx.key, { backend, locked: true });
        }).catch(() => undefined);
        return fallback(e instanceof Error && e.message ? e : new Error('The browser refused to store more data (quota exceeded).'));
      }
      throw e;
    }
  }

  /** @internal */
  static async fromManifest(manifest: Manifest, ctx: Ctx): Promise<StoredSource> {
    const records = new Map<string, FileRecord>();
    for (const f of manifest.files) {
      const r = await ctx.backend.meta.get<FileRecord>(fileRecordKey(fileKey(ctx.key, f)));
      if (!r) throw new ModelLoadError(`The stored copy of ${manifest.base} changed while opening it (another tab?); load it again.`, manifest.base);
      records.set(f.name, r);
    }
    return new StoredSource(manifest, ctx, records);
  }

  private entry(file: string): FileEntry {
    const f = this.files.get(file);
    if (!f) throw new ModelLoadError(`${file} is not part of the stored model ${this.name}`, this.ctx.remote.url(file), 404);
    return f;
  }

  async exists(file: string): Promise<boolean> {
    return this.files.has(file);
  }

  async size(file: string): Promise<number> {
    return this.entry(file).size;
  }

  async text(file: string): Promise<string> {
    const f = this.entry(file);
    return new TextDecoder().decode(await this.read(file, 0, f.size));
  }

  async read(file: string, offset: number, length: number): Promise<Uint8Array> {
    checkRange(offset, length);
    const f = this.entry(file);
    if (offset + length > f.size) {
      throw new ModelLoadError(`Read past the end of ${file} (stored, ${f.size} bytes): ${length} bytes at ${offset}`, this.ctx.remote.url(file));
    }
    const out = new Uint8Array(length);
    let pos = offset;
    while (pos < offset + length) {
      const i = Math.floor(pos / f.chunkSize);
      const chunk = await this.chunk(f, i);
      const start = pos - i * f.chunkSize;
      const take = Math.min(chunk.length - start, offset + length - pos);
      out.set(chunk.subarray(start, start + take), pos - offset);
      pos += take;
    }
    return out;
  }

  private chunk(f: FileEntry, i: number): Promise<Uint8Array> {
    const ck = chunkKey(fileKey(this.ctx.key, f), i);
    const hit = this.cache.get(ck);
    if (hit) {
      this.cache.delete(ck);
      this.cache.set(ck, hit);
      return Promise.resolve(hit);
    }
    let p = this.inflight.get(ck);
    if (!p) {
      p = this.loadChunk(f, i, ck).then((bytes) => {
        this.cache.set(ck, bytes);
        while (this.cache.size > this.cacheChunks) this.cache.delete(this.cache.keys().next().value as string);
        return bytes;
      });
      this.inflight.set(ck, p);
      p.finally(() => this.inflight.delete(ck)).catch(() => undefined);
    }
    return p;
  }

  /** A chunk from storage, checked (length always, hash the first time); a bad one is deleted and fetched again. */
  private async loadChunk(f: FileEntry, i: number, ck: string): Promise<Uint8Array> {
    const want = chunkLength(f.size, f.chunkSize, i);
    const rec = this.records.get(f.name)!;
    let problem: string;
    try {
      const c = await this.ctx.backend.chunks.get<ChunkRecord>(ck);
      if (!c) problem = 'missing';
      else {
        const bytes = new Uint8Array(c.data);
        if (bytes.length !== want) problem = `truncated (${bytes.length} of ${want} bytes)`;
        else if (this.verified.has(ck)) return bytes;
        else if ((await sha256Hex(bytes)) !== rec.chunkSha256[i]) problem = 'corrupt (SHA-256 mismatch)';
        else {
          this.verified.add(ck);
          return bytes;
        }
      }
    } catch (e) {
      problem = `unreadable (${errorText(e)})`;
    }
    // Never serve it: drop the chunk and the file's complete mark, then try to fetch it again.
    const fk = fileKey(this.ctx.key, f);
    await this.ctx.backend.chunks.del(ck).catch(() => undefined);
    await this.ctx.backend.meta.del(fileRecordKey(fk)).catch(() => undefined);
    const what = `Stored chunk ${i} of ${f.name} is ${problem}`;
    if (this.manifest.quantized) {
      // Made on this machine, not downloaded: nothing to fetch it from. Drop the copy; the next load rebuilds it.
      await deleteModel(this.ctx.key, { backend: this.ctx.backend }).catch(() => undefined);
      throw new ModelLoadError(`${what}. The stored ${this.manifest.quantized.weights} copy of ${this.manifest.base} was deleted; load the model again to rebuild it from the original.`, this.manifest.base);
    }
    let bytes: Uint8Array;
    try {
      bytes = await fetchWithRetries(this.ctx, f, i * f.chunkSize, want);
    } catch (e) {
      throw new ModelLoadError(
        `${what}; it was deleted, and downloading it again failed: ${errorText(e)} Reload when online to repair the model.`,
        this.ctx.remote.url(f.name));
    }
    const sha = await sha256Hex(bytes);
    if (rec.chunkSha256[i] !== sha) {
      throw new IntegrityError(`${what}; the copy downloaded again does not match the recorded hash either (the file changed on the server). Reload to update the model.`, this.ctx.remote.url(f.name));
    }
    // Put it back only while the stored model still names this file (not after a delete or an update).
    const now = await this.ctx.backend.meta.get<Manifest>(modelRecordKey(this.ctx.key)).catch(() => undefined);
    if (now?.files.some((x) => x.name === f.name && x.fileId === f.fileId)) {
      await storeChunk(this.ctx, ck, bytes, sha, this.manifest.totalBytes, bytes.length);
      await this.ctx.backend.meta.set(fileRecordKey(fk), rec);
    }
    this.verified.add(ck);
    return bytes;
  }
}

/** One range of a stored file, fetched again to repair a damaged chunk, with retries. */
async function fetchWithRetries(ctx: Ctx, f: FileEntry, offset: number, length: number): Promise<Uint8Array> {
  const retries = ctx.opts.retries ?? 4;
  const base = ctx.opts.retryDelayMs ?? 500;
  for (let attempt = 0; ; attempt++) {
    try {
      return await ctx.remote.fetchRange(f.name, offset, length, f.size);
    } catch (e) {
      if (!(e instanceof FetchError) || !e.retriable || attempt >= retries) throw e;
      await sleep(Math.min(base * 2 ** attempt, 8000));
    }
  }
}

export async function storageNumbers(backend: StoreBackend) {
  const est = await backend.estimate();
  const quota = est?.quota ?? NaN;
  const usage = est?.usage ?? NaN;
  return { quota, usage, available: quota - usage };
}

export async function quotaError(ctx: Ctx, required: number, modelBytes: number, detail?: string, writeRefused = false): Promise<StorageQuotaError> {
  const { quota, usage, available } = await storageNumbers(ctx.backend);
  const others = (await listModels({ backend: ctx.backend }).catch(() => []))
    .filter((m) => m.id !== ctx.key)
    .map((m) => ({ id: m.id, name: m.name, bytes: m.storedBytes }))
    .sort((a, b) => b.bytes - a.bytes);
  return new StorageQuotaError(required, writeRefused ? NaN : available, quota, usage, modelBytes, others, detail);
}

/** Stores one chunk; `remaining` is what the download still has to store, this chunk included (for the quota message). */
export async function storeChunk(ctx: Ctx, ck: string, bytes: Uint8Array, sha256: string, modelBytes: number, remaining: number): Promise<void> {
  const data = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes.buffer : bytes.slice().buffer;
  const rec: ChunkRecord = { data: data as ArrayBuffer, size: bytes.length, sha256 };
  try {
    await ctx.backend.chunks.set(ck, rec);
  } catch (e) {
    if (isQuotaExceeded(e)) {
      throw await quotaError(ctx, remaining, modelBytes, `The browser refused to store more data (quota exceeded) with ${formatBytes(modelBytes - remaining)} of this model stored.`, true);
    }
    throw new StorageUnavailableError(e);
  }
}

export interface RemoteVersion {
  commit?: string;
  etag?: string;
  sha256?: string;
  /** Without a commit: a digest of the weight files' identities (quantized copies; see checkpointVersion). */
  weights?: string;
  /** config.json's metadata. */
  info: RemoteFileInfo;
  /** config.json's bytes when they had to be read. */
  body?: Uint8Array;
}

/** The remote version of the model: one HEAD of config.json (and its bytes if the server gives no ETag or commit). */
export async function remoteVersion(remote: Remote): Promise<RemoteVersion> {
  const info = await remote.probe('config.json');
  if (!info) {
    throw new FetchError(`There is no model at ${remote.base}: config.json was not found at ${remote.url('config.json')} (HTTP 404, or an HTML page instead of the file)`, remote.url('config.json'), 404, false);
  }
  if (info.commit || info.etag) return { commit: info.commit, etag: info.etag, info };
  const body = await remote.fetchRange('config.json', 0, info.size, info.size);
  return { sha256: await sha256Hex(body), info, body };
}

export function sameVersion(m: Pick<Manifest, 'commit' | 'configEtag' | 'configSha256' | 'weightsId'>, v: RemoteVersion): boolean {
  if (v.commit !== undefined || m.commit !== undefined) {
    if (v.commit !== m.commit) return false;
  }
  if (v.etag !== undefined || m.configEtag !== undefined) {
    if (v.etag !== m.configEtag) return false;
  }
  if (v.sha256 !== undefined && v.sha256 !== m.configSha256) return false;
  if ((v.weights !== undefined || m.weightsId !== undefined) && v.weights !== m.weightsId) return false;
  return true;
}

/**
 * The stored files (config.json aside) whose identity at the remote (ETag, Last-Modified, size) is no
 * longer the recorded one. Without a commit (static hosting) config.json's ETag says nothing about the
 * other files: a changed model.safetensors beside an unchanged config.json must not be served stale.
 */
async function changedFiles(remote: Remote, m: Manifest): Promise<string[]> {
  const files = m.files.filter((f) => f.name !== 'config.json');
  const infos = await Promise.all(files.map((f) => remote.probe(f.name)));
  return files.filter((f, i) => {
    const info = infos[i];
    if (!info || info.size !== f.size) return true;
    if (f.fileId.startsWith('sha256-') && !info.sha256) return false; // the Hub tree's SHA-256: a commit covers it
    return fileIdFor(info, m.version) !== f.fileId;
  }).map((f) => f.name);
}

/**
 * A digest of the identities of a checkpoint's weight files (model.safetensors, or the index and every
 * shard it names), for versions without a commit.
 */
export async function weightFilesId(remote: Remote): Promise<string> {
  const single = await remote.probe(SINGLE);
  const infos: RemoteFileInfo[] = [];
  if (single) infos.push(single);
  else {
    const index = await remote.probe(INDEX);
    if (!index) return 'no-weights';
    infos.push(index);
    const body = await remote.fetchRange(INDEX, 0, index.size, index.size);
    let shards: string[] = [];
    try {
      const wm = (JSON.parse(new TextDecoder().decode(body)) as { weight_map?: Record<string, unknown> }).weight_map ?? {};
      shards = [...new Set(Object.values(wm).filter((x): x is string => typeof x === 'string'))].sort();
    } catch {
      /* not an index: its own identity stands for it */
    }
    for (const s of shards) checkModelFileName(s, remote.url(INDEX));
    infos.push(...(await Promise.all(shards.map((f) => remote.probe(f)))).filter((i): i is RemoteFileInfo => i !== null));
  }
  return (await sha256Hex(new TextEncoder().encode(infos.map((i) => `${i.file}:${fileIdFor(i, '')}`).join('\n')))).slice(0, 32);
}

/** A small file already stored and verified (e.g. an unchanged index), or undefined. */
async function readStoredWhole(ctx: Ctx, f: Pick<FileEntry, 'name' | 'fileId'>, size: number): Promise<Uint8Array | undefined> {
  const fk = fileKey(ctx.key, f);
  const rec = await ctx.backend.meta.get<FileRecord>(fileRecordKey(fk));
  if (!rec || rec.size !== size) return undefined;
  const out = new Uint8Array(size);
  for (let i = 0; i < rec.chunks; i++) {
    const c = await ctx.backend.chunks.get<ChunkRecord>(chunkKey(fk, i));
    const want = chunkLength(size, rec.chunkSize, i);
    if (!c || c.data.byteLength !== want) return undefined;
    const bytes = new Uint8Array(c.data);
    if ((await sha256Hex(bytes)) !== rec.chunkSha256[i]) return undefined;
    out.set(bytes, i * rec.chunkSize);
  }
  return out;
}

/** Which files make up the model at the remote, with sizes and identities. */
async function plan(ctx: Ctx, v: RemoteVersion): Promise<{ manifest: Manifest; prefetched: Map<string, Uint8Array> }> {
  const { remote, opts } = ctx;
  const version = v.commit ?? v.etag ?? v.sha256 ?? `size-${v.info.size}`;
  const chunkSize = Math.max(1, opts.chunkSize ?? DEFAULT_CHUNK_SIZE);
  const prefetched = new Map<string, Uint8Array>();
  if (v.body) prefetched.set('config.json', v.body);
  const infos: RemoteFileInfo[] = [v.info];
  const absent: string[] = [];
  const optional = [...OPTIONAL_FILES, ...(opts.extraFiles ?? [])].filter((f) => f !== 'config.json');
  const probed = await Promise.all(optional.map((f) => remote.probe(f)));
  optional.forEach((f, i) => (probed[i] ? infos.push(probed[i]) : absent.push(f)));
  // A converted model: the shards named by its manifest instead of safetensors, with their declared SHA-256.
  const converted = await remote.probe(CONVERTED_MANIFEST);
  const single = converted ? null : await remote.probe(SINGLE);
  if (converted) {
    infos.push(converted);
    absent.push(SINGLE, INDEX);
    const body =
      (await readStoredWhole(ctx, { name: CONVERTED_MANIFEST, fileId: fileIdFor(converted, version) }, converted.size)) ??
      (await remote.fetchRange(CONVERTED_MANIFEST, 0, converted.size, converted.size));
    prefetched.set(CONVERTED_MANIFEST, body);
    let shards: { file: string; sha256?: unknown }[];
    try {
      shards = (JSON.parse(new TextDecoder().decode(body)) as { shards?: { file: string; sha256?: unknown }[] }).shards ?? [];
      if (!Array.isArray(shards) || !shards.every((s) => typeof s?.file === 'string' && s.file !== '')) throw new Error('no "shards" list of files');
    } catch (e) {
      throw new ModelLoadError(`${remote.url(CONVERTED_MANIFEST)} is not a valid converted-model manifest: ${errorText(e)}`, remote.url(CONVERTED_MANIFEST));
    }
    for (const s of shards) checkModelFileName(s.file, remote.url(CONVERTED_MANIFEST));
    const shardInfos = await Promise.all(shards.map((s) => remote.probe(s.file)));
    shards.forEach((s, i) => {
      const si = shardInfos[i];
      if (!si) throw new FetchError(`Weight shard ${s.file} listed in ${CONVERTED_MANIFEST} was not found (HTTP 404) at ${remote.url(s.file)}`, remote.url(s.file), 404, false);
      if (!si.sha256 && typeof s.sha256 === 'string' && /^[0-9a-f]{64}$/.test(s.sha256)) si.sha256 = s.sha256;
      infos.push(si);
    });
  } else if (single) {
    infos.push(single);
    absent.push(INDEX);
  } else {
    absent.push(SINGLE);
    const index = await remote.probe(INDEX);
    if (!index) {
      throw new FetchError(`${remote.base} has config.json but no weights: neither ${SINGLE} nor ${INDEX} was found (HTTP 404)`, remote.url(SINGLE), 404, false);
    }
    infos.push(index);
    const body =
      (await readStoredWhole(ctx, { name: INDEX, fileId: fileIdFor(index, version) }, index.size)) ??
      (await remote.fetchRange(INDEX, 0, index.size, index.size));
    prefetched.set(INDEX, body);
    let shards: string[];
    try {
      const wm = (JSON.parse(new TextDecoder().decode(body)) as { weight_map?: Record<string, unknown> }).weight_map;
      if (!wm || typeof wm !== 'object') throw new Error('no "weight_map"');
      shards = [...new Set(Object.values(wm).filter((s): s is string => typeof s === 'string'))].sort();
    } catch (e) {
      throw new ModelLoadError(`${remote.url(INDEX)} is not a valid safetensors index: ${errorText(e)}`, remote.url(INDEX));
    }
    for (const s of shards) checkModelFileName(s, remote.url(INDEX));
    const shardInfos = await Promise.all(shards.map((s) => remote.probe(s)));
    shards.forEach((s, i) => {
      const si = shardInfos[i];
      if (!si) throw new FetchError(`Weight shard ${s} listed in ${INDEX} was not found (HTTP 404) at ${remote.url(s)}`, remote.url(s), 404, false);
      infos.push(si);
    });
  }
  const useHub = opts.hubApi ?? new URL(remote.base).hostname === 'huggingface.co';
  const tree = useHub ? await remote.hubTree() : null;
  if (tree) {
    for (const i of infos) {
      const t = tree.get(i.file);
      if (!t) continue;
      if (t.size !== i.size) {
        throw new FetchError(`${i.url} is ${i.size} bytes, but the Hub lists it at ${t.size}: the repository changed during the check, try again`, i.url, undefined, true);
      }
      if (t.sha256 && !i.sha256) i.sha256 = t.sha256;
    }
  }
  const files: FileEntry[] = infos.map((i) => ({
    name: i.file,
    size: i.size,
    fileId: fileIdFor(i, version),
    sha256: i.sha256,
    etag: i.etag,
    chunkSize,
  }));
  const now = Date.now();
  return {
    manifest: {
      key: ctx.key,
      spec: opts.spec ?? ctx.key,
      base: remote.base,
      revision: revisionOf(remote.base),
      commit: v.commit,
      configEtag: v.etag,
      configSha256: v.sha256,
      version,
      files,
      absent,
      totalBytes: files.reduce((n, f) => n + f.size, 0),
      createdAt: now,
      lastUsed: now,
      complete: false,
    },
    prefetched,
  };
}

/** What of each file is already stored. */
async function storedState(ctx: Ctx, m: Manifest): Promise<Map<string, { complete: boolean; have: Set<number> }>> {
  const out = new Map<string, { complete: boolean; have: Set<number> }>();
  for (const f of m.files) {
    const fk = fileKey(ctx.key, f);
    const rec = await ctx.backend.meta.get<FileRecord>(fileRecordKey(fk));
    const have = new Set((await ctx.backend.chunks.keys(chunkPrefix(fk))).map(chunkIndexOf));
    const n = chunkCount(f.size, f.chunkSize);
    let complete = !!rec && rec.size === f.size && rec.chunks === n && rec.chunkSize === f.chunkSize;
    for (let i = 0; complete && i < n; i++) if (!have.has(i)) complete = false;
    if (!complete && rec) await ctx.backend.meta.del(fileRecordKey(fk));
    out.set(f.name, { complete, have });
  }
  return out;
}

/** Hashes a fully stored file by reading its chunks back in order; checks lengths and chunk hashes. */
async function verifyFile(ctx: Ctx, f: FileEntry): Promise<{ ok: true; record: FileRecord } | { ok: false; why: string }> {
  const fk = fileKey(ctx.key, f);
  const n = chunkCount(f.size, f.chunkSize);
  const whole = f.sha256 ? new Sha256() : null;
  const chunkSha: string[] = [];
  for (let i = 0; i < n; i++) {
    const c = await ctx.backend.chunks.get<ChunkRecord>(chunkKey(fk, i));
    const want = chunkLength(f.size, f.chunkSize, i);
    if (!c) return { ok: false, why: `chunk ${i} is missing` };
    const bytes = new Uint8Array(c.data);
    if (bytes.length !== want || c.size !== want) return { ok: false, why: `chunk ${i} has ${bytes.length} bytes, expected ${want}` };
    if (whole) whole.update(bytes);
    else if ((await sha256Hex(bytes)) !== c.sha256) return { ok: false, why: `chunk ${i} does not match its SHA-256` };
    chunkSha.push(c.sha256);
  }
  let sha: string | undefined;
  if (whole) {
    sha = whole.hex();
    if (sha !== f.sha256) return { ok: false, why: `its SHA-256 is ${sha}, the server declared ${f.sha256}` };
  }
  return {
    ok: true,
    record: {
      name: f.name, size: f.size, chunkSize: f.chunkSize, chunks: n, chunkSha256: chunkSha,
      verified: whole ? 'sha256' : 'size', sha256: sha, completedAt: Date.now(),
    },
  };
}

/** Downloads every missing chunk of the manifest, verifies each file, writes the file records. */
/** Returns the bytes it had to fetch (0: everything was stored). */
async function download(ctx: Ctx, m: Manifest, prefetched: Map<string, Uint8Array>): Promise<number> {
  const state = await storedState(ctx, m);
  const missing = m.files.flatMap((f) => {
    const s = state.get(f.name)!;
    if (s.complete) return [];
    const idx: number[] = [];
    for (let i = 0; i < chunkCount(f.size, f.chunkSize); i++) if (!s.have.has(i)) idx.push(i);
    return [{ f, idx }];
  });
  const filesDone = m.files.length - missing.length;
  if (missing.length === 0) return 0;

  const need = missing.reduce((n, { f, idx }) => n + idx.reduce((k, i) => k + chunkLength(f.size, f.chunkSize, i), 0), 0);
  const { available } = await storageNumbers(ctx.backend);
  // 1% + 1 MiB headroom for IndexedDB's own overhead.
  if (Number.isFinite(available) && need * 1.01 + 1048576 > available) {
    throw await quotaError(ctx, need, m.totalBytes);
  }
  if (ctx.opts.persist !== false) {
    const already = await ctx.backend.persisted();
    if (already === false) await ctx.backend.persist();
  }

  const progress = new Progress(m.totalBytes, m.files.length, ctx.opts.onProgress);
  progress.add(m.totalBytes - need);
  for (let i = 0; i < filesDone; i++) progress.fileDone();

  const parallel = Math.max(1, ctx.opts.parallel ?? 4);
  type Task = { f: FileEntry; i: number };
  const queue: Task[] = missing.flatMap(({ f, idx }) => idx.map((i) => ({ f, i })));
  const left = new Map(missing.map(({ f, idx }) => [f.name, idx.length]));
  const retriedWhole = new Set<string>();
  let storedNow = 0;
  const finalizers: Promise<void>[] = [];
  let failure: unknown = null;

  const finalize = async (f: FileEntry): Promise<void> => {
    const res = await verifyFile(ctx, f);
    const fk = fileKey(ctx.key, f);
    if (res.ok) {
      await ctx.backend.meta.set(fileRecordKey(fk), res.record);
      progress.fileDone();
      return;
    }
    await ctx.backend.chunks.delPrefix(chunkPrefix(fk));
    if (retriedWhole.has(f.name)) {
      throw new IntegrityError(
        `${f.name} from ${ctx.remote.url(f.name)} failed its integrity check twice: ${res.why}. The stored copy was deleted; the server's file or its declared hash is wrong.`,
        ctx.remote.url(f.name));
    }
    // Once more from scratch: a chunk may have been damaged on the way or in storage.
    retriedWhole.add(f.name);
    wholeFiles.delete(f.name);
    for (let i = 0; i < chunkCount(f.size, f.chunkSize); i++) stored.delete(`${f.name}#${i}`);
    wanted.set(f.name, new Set(Array.from({ length: chunkCount(f.size, f.chunkSize) }, (_, i) => i)));
    const n = chunkCount(f.size, f.chunkSize);
    progress.add(-f.size);
    left.set(f.name, n);
    for (let i = 0; i < n; i++) queue.push({ f, i });
  };

  // A server that ignores Range answers a chunk request with the whole file: that one body then gives every
  // chunk of the file (wholeFiles: its download), instead of one full download per chunk.
  const wholeFiles = new Map<string, Promise<void>>();
  const stored = new Set<string>();
  const wanted = new Map(missing.map(({ f, idx }) => [f.name, new Set(idx)]));
  const put = async (f: FileEntry, i: number, bytes: Uint8Array): Promise<void> => {
    await storeChunk(ctx, chunkKey(fileKey(ctx.key, f), i), bytes, await sha256Hex(bytes), m.totalBytes, need - storedNow);
    stored.add(`${f.name}#${i}`);
  };
  const storeWhole = (f: FileEntry, body: WholeBody): Promise<void> =>
    body.chunks(f.chunkSize, async (j, bytes) => {
      if (!wanted.get(f.name)?.has(j) || stored.has(`${f.name}#${j}`)) return;
      await put(f, j, bytes);
      progress.add(bytes.length, f.name);
    });
  const retries = ctx.opts.retries ?? 4;
  const backoff = (attempt: number) => sleep(Math.min((ctx.opts.retryDelayMs ?? 500) * 2 ** attempt, 8000));
  const retriable = (e: unknown, attempt: number) => e instanceof FetchError && e.retriable && attempt < retries;
  /** Stores every chunk of f from whole bodies, starting with `first`; a body cut short is asked for again. */
  const downloadWhole = async (f: FileEntry, first: WholeBody): Promise<void> => {
    let body: WholeBody | null = first;
    for (let attempt = 0; ; attempt++) {
      try {
        body ??= await ctx.remote.fetchWhole(f.name, f.size);
        return await storeWhole(f, body);
      } catch (e) {
        body = null;
        if (!retriable(e, attempt)) throw e;
        await backoff(attempt);
      }
    }
  };
  /** Chunk i of f, stored: by a Range request, or from the file's whole body when the server ignores Range. */
  const fetchAndStore = async (f: FileEntry, i: number, len: number): Promise<void> => {
    for (let attempt = 0; ; attempt++) {
      const running = wholeFiles.get(f.name);
      if (running) return running;
      let got = 0;
      let r: Uint8Array | WholeBody;
      try {
        r = await ctx.remote.fetchRangeOrWhole(f.name, i * f.chunkSize, len, f.size, (n) => {
          got += n;
          progress.add(n, f.name);
        });
      } catch (e) {
        progress.add(-got); // these bytes will come again
        if (!retriable(e, attempt)) throw e;
        await backoff(attempt);
        continue;
      }
      if (r instanceof Uint8Array) return put(f, i, r);
      const other = wholeFiles.get(f.name);
      if (other) {
        r.cancel();
        return other;
      }
      const p = downloadWhole(f, r);
      wholeFiles.set(f.name, p);
      return p;
    }
  };

  const runTask = async ({ f, i }: Task): Promise<void> => {
    const len = chunkLength(f.size, f.chunkSize, i);
    const pre = prefetched.get(f.name);
    if (pre && pre.length === f.size && !retriedWhole.has(f.name)) {
      await put(f, i, pre.subarray(i * f.chunkSize, i * f.chunkSize + len));
      progress.add(len, f.name);
    } else if (!stored.has(`${f.name}#${i}`)) {
      await fetchAndStore(f, i, len);
    }
    storedNow += len;
    const l = left.get(f.name)! - 1;
    left.set(f.name, l);
    if (l === 0) {
      const p = finalize(f);
      finalizers.push(p);
      await p;
    }
  };

  const worker = async (): Promise<void> => {
    for (;;) {
      if (failure) return;
      const t = queue.shift();
      if (!t) {
        // Files being verified may put their chunks back in the queue.
        const pending = finalizers.length;
        await Promise.allSettled(finalizers);
        if (queue.length === 0 && finalizers.length === pending) return;
        continue;
      }
      try {
        await runTask(t);
      } catch (e) {
        failure ??= e;
        return;
      }
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  if (failure) throw failure;
  progress.emit(true);
  return need;
}

async function collectGarbage(ctx: Ctx, keep: Manifest[]): Promise<void> {
  const live = new Set(keep.flatMap((m) => m.files.map((f) => fileKey(ctx.key, f))));
  const prefix = `${ctx.key}|`;
  const chunkKeys = await ctx.backend.chunks.keys(prefix);
  const dead = new Set(chunkKeys.map((k) => k.slice(0, k.lastIndexOf('#'))).filter((fk) => !live.has(fk)));
  for (const fk of dead) await ctx.backend.chunks.delPrefix(chunkPrefix(fk));
  for (const rk of await ctx.backend.meta.keys(`file:${prefix}`)) {
    if (!live.has(rk.slice('file:'.length))) await ctx.backend.meta.del(rk);
  }
}

async function openLocked(ctx: Ctx): Promise<StoredSource> {
  const { backend, opts } = ctx;
  const current = await backend.meta.get<Manifest>(modelRecordKey(ctx.key));
  const pending = await backend.meta.get<Manifest>(pendingRecordKey(ctx.key));
  const useCurrent = async (warning?: string): Promise<StoredSource> => {
    const m = current!;
    const state = await storedState(ctx, m);
    const broken = m.files.filter((f) => !state.get(f.name)!.complete).map((f) => f.name);
    if (broken.length) {
      throw new ModelLoadError(
        `The stored copy of ${m.base} is incomplete (${broken.join(', ')} missing or damaged) and the server could not be reached` +
          (warning ? ` (${warning})` : '') + '. Connect to the network and load it again to repair it.', m.base);
    }
    m.lastUsed = Date.now();
    await backend.meta.set(modelRecordKey(ctx.key), m);
    const src = await StoredSource.fromManifest(m, ctx);
    src.warning = warning;
    src.fromStorage = true;
    src.persisted = await backend.persisted();
    new Progress(m.totalBytes, m.files.length, opts.onProgress).allStored();
    return src;
  };

  if (current && opts.revalidate === false) return useCurrent();

  let v: RemoteVersion;
  try {
    const checker = current
      ? new Remote(ctx.key, { fetch: opts.fetchImpl, headers: opts.headers, stallTimeoutMs: opts.revalidateTimeoutMs ?? 10_000 })
      : ctx.remote;
    v = await remoteVersion(checker);
  } catch (e) {
    if (current) return useCurrent(`could not check for updates: ${errorText(e)}`);
    if (pending && e instanceof FetchError && e.network) {
      const state = await storedState(ctx, pending);
      const have = pending.files.reduce((n, f) => n + Math.min(f.size, state.get(f.name)!.have.size * f.chunkSize), 0);
      throw new FetchError(
        `${errorText(e)} ${formatBytes(have)} of ${formatBytes(pending.totalBytes)} of this model are stored; the download resumes where it stopped when the server can be reached.`,
        (e as FetchError).url ?? ctx.key, undefined, true, true);
    }
    throw e;
  }

  let target: Manifest;
  let prefetched = new Map<string, Uint8Array>();
  let stale: string[] = [];
  if (current && sameVersion(current, v) && !v.commit) {
    try {
      stale = await changedFiles(new Remote(ctx.key, { fetch: opts.fetchImpl, headers: opts.headers, stallTimeoutMs: opts.revalidateTimeoutMs ?? 10_000 }), current);
    } catch (e) {
      return useCurrent(`could not check for updates: ${errorText(e)}`);
    }
  }
  // A copy stored before the engine read an optional file (e.g. dms_metadata.json) neither holds it nor
  // records it as absent: plan again, which fetches only what is missing (stored chunks are shared).
  if (current && stale.length === 0) {
    const known = new Set([...current.files.map((f) => f.name), ...(current.absent ?? [])]);
    stale = OPTIONAL_FILES.filter((f) => !known.has(f));
  }
  if (current && sameVersion(current, v) && stale.length === 0) target = current;
  else if (pending && !pending.stale && sameVersion(pending, v)) target = pending;
  else {
    try {
      ({ manifest: target, prefetched } = await plan(ctx, v));
    } catch (e) {
      if (current) return useCurrent(`could not read the new version: ${errorText(e)}`);
      throw e;
    }
    await backend.meta.set(pendingRecordKey(ctx.key), target);
    // Chunks of an earlier unfinished plan that this one does not share are dropped now.
    await collectGarbage(ctx, current ? [current, target] : [target]);
  }

  let downloaded: number;
  try {
    downloaded = await download(ctx, target, prefetched);
  } catch (e) {
    // A plan whose declared hash failed twice must not be resumed as is: the next open plans afresh.
    if (e instanceof IntegrityError && target !== current) await backend.meta.set(pendingRecordKey(ctx.key), { ...target, stale: true });
    if (current && target !== current) return useCurrent(`the update could not be downloaded: ${errorText(e)}`);
    throw e;
  }
  target.complete = true;
  target.lastUsed = Date.now();
  await backend.meta.set(modelRecordKey(ctx.key), target);
  await backend.meta.del(pendingRecordKey(ctx.key));
  await collectGarbage(ctx, [target]);
  const src = await StoredSource.fromManifest(target, ctx);
  src.fromStorage = downloaded === 0;
  src.downloadedBytes = downloaded;
  src.persisted = await backend.persisted();
  if (downloaded === 0) new Progress(target.totalBytes, target.files.length, opts.onProgress).allStored();
  return src;
}
