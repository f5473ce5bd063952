/**
 * How the worker gets a model onto the GPU, and which form of it the weight store keeps:
 *
 * - a plain checkpoint that runs quantized (q8/q4): the first start streams the shards from the
 *   network onto the GPU, quantized as they arrive, and saves the quantized weights in the store
 *   (worker/store/quantized-copy.ts); later starts read only that copy (a warm start, no checkpoint byte);
 * - anything else (a converted model, or f16/f32 weights): the store downloads the published files
 *   once (worker/store/stored-source.ts) and the engine reads them from there.
 *
 * Every load reports its start (cold/warm), time and bytes as ModelInfo.load.
 */
import type { Gpu } from '../gpu/context';
import { Engine, type EngineOptions } from '../engine/engine';
import { ConvertedError, preflightSource } from './converted';
import { PreflightError, type PreflightReport } from './preflight';
import { HttpSource } from './source';
import type { LoadProgress, LoadReport, LoadRequest, ModelInfo, WeightFormat } from '../protocol';
import { StoredSource, type StoreOpenOptions } from '../store/stored-source';
import { RemoteSource } from '../store/remote-source';
import { QUANTIZED_FORMATS, checkQuantizedQuota, checkpointVersion, completeQuantizedCopy, missingCopiedFiles, openQuantizedCopy, saveQuantizedCopy } from '../store/quantized-copy';
import { StorageQuotaError, StorageUnavailableError } from '../store/errors';

export interface LoadModelOptions {
  /** What the user asked for ('default', 'org/name', a URL), kept in the store's library. */
  spec: string;
  onProgress?: (p: LoadProgress) => void;
  /** Store and network options (tests: a memory backend, a fetch, small chunks). */
  store?: Pick<StoreOpenOptions, 'backend' | 'fetchImpl' | 'headers' | 'chunkSize' | 'revalidateTimeoutMs' | 'retryDelayMs'>;
  /** Engine options beyond the request (tests: small parts and slices). */
  engine?: Pick<EngineOptions, 'maxPartBytes' | 'sliceBytes' | 'gpuMemoryBytes'>;
  /** Shard size of a saved quantized copy (default 64 MB). */
  shardBytes?: number;
  /** Cancels a load that streams from the network (and its saving): the reads reject with the reason. */
  signal?: AbortSignal;
}

export interface LoadedModel {
  engine: Engine;
  info: ModelInfo & { load: LoadReport };
}

export async function loadModel(gpu: Gpu, base: string, req: LoadRequest, opts: LoadModelOptions): Promise<LoadedModel> {
  const t0 = performance.now();
  const progress = opts.onProgress ?? (() => {});
  const net = { fetch: opts.store?.fetchImpl, headers: opts.store?.headers };
  const storeOpts = { ...opts.store, spec: opts.spec };
  const engineOpts: EngineOptions = {
    kv: req.kv,
    kvBudget: req.kvBudget,
    kvDtype: req.kvDtype,
    maxContext: req.maxContext,
    sequences: Math.max(1, Math.floor(req.chains ?? 1)),
    onProgress: progress,
    ...opts.engine,
  };
  const finish = (engine: Engine, r: Omit<LoadReport, 'ms' | 'readBytes' | 'weights'>, stored: boolean, storageWarning?: string): LoadedModel => {
    const load: LoadReport = { ...r, ms: performance.now() - t0, readBytes: engine.loadStats?.bytesRead ?? 0, weights: engine.info.weights };
    return { engine, info: { ...engine.info, stored, storageWarning, load } };
  };

  // Does it fit this GPU, and in which format? From config.json alone, before any download. Offline: unknown.
  const report = await preflightSource(new HttpSource(base, net), gpu.caps, {
    weights: req.weights, maxContext: req.maxContext, kv: req.kv, kvBudget: req.kvBudget, kvDtype: req.kvDtype, sequences: engineOpts.sequences,
  }).catch((err: unknown) => {
    if (err instanceof PreflightError || err instanceof ConvertedError) throw err;
    return null;
  });

  const quantize = report ? !report.converted && QUANTIZED_FORMATS.includes(report.format) : null;
  if (quantize !== false) {
    const version = report ? await checkpointVersion(base, storeOpts) : null;
    const formats: readonly WeightFormat[] = report ? [report.format] : req.weights ? [req.weights] : QUANTIZED_FORMATS;
    let copy = await openQuantizedCopy(base, formats, version, storeOpts);
    // A copy saved before the engine copied a small file (e.g. dms_metadata.json) gets it now, while online.
    if (copy && version && missingCopiedFiles(copy.manifest).length > 0) {
      const weights = copy.weights;
      if (await completeQuantizedCopy(base, weights, storeOpts).catch(() => false)) copy = (await openQuantizedCopy(base, [weights], version, storeOpts)) ?? copy;
    }
    if (copy) {
      const engine = await Engine.load(gpu, copy, { ...engineOpts, weights: copy.weights });
      return finish(engine, { start: 'warm', downloadedBytes: 0, stored: 'quantized', storedBytes: copy.manifest.totalBytes }, true, copy.warning);
    }
    if (quantize) return streamAndSave(gpu, base, req, report!, version, engineOpts, opts, finish);
  }

  // The published files, stored once (resumable, checked), then read from storage.
  const source = await StoredSource.open(base, { ...storeOpts, onProgress: progress, memoryFallback: req.memoryFallback ?? false });
  const engine = await Engine.load(gpu, source, { ...engineOpts, weights: req.weights });
  if (source instanceof StoredSource) {
    return finish(
      engine,
      { start: source.fromStorage ? 'warm' : 'cold', downloadedBytes: source.downloadedBytes, stored: 'checkpoint', storedBytes: source.manifest.totalBytes },
      true,
      source.warning,
    );
  }
  return finish(engine, { start: 'cold', downloadedBytes: engine.loadStats?.bytesRead ?? 0, stored: null, storedBytes: 0 }, false, source.reason.message);
}

/** The cold start of a checkpoint that runs quantized: stream it onto the GPU, then save the quantized copy. */
async function streamAndSave(
  gpu: Gpu, base: string, req: LoadRequest, report: PreflightReport, version: Awaited<ReturnType<typeof checkpointVersion>>,
  engineOpts: EngineOptions, opts: LoadModelOptions, finish: (e: Engine, r: Omit<LoadReport, 'ms' | 'readBytes' | 'weights'>, stored: boolean, w?: string) => LoadedModel,
): Promise<LoadedModel> {
  const progress = opts.onProgress ?? (() => {});
  const storeOpts = { ...opts.store, spec: opts.spec };
  const format = report.format;
  const expected = report.formats[format].weightBytes;
  let warning: string | undefined;
  let save = !!version;
  if (!version) warning = 'The server did not say which version of the model this is, so the quantized copy was not saved.';
  try {
    if (save) await checkQuantizedQuota(base, format, expected, storeOpts);
  } catch (e) {
    if (!(e instanceof StorageQuotaError || e instanceof StorageUnavailableError) || !req.memoryFallback) throw e;
    save = false;
    warning = e.message;
  }
  const source = new RemoteSource(base, { fetch: opts.store?.fetchImpl, headers: opts.store?.headers, retryDelayMs: opts.store?.retryDelayMs, signal: opts.signal });
  const engine = await Engine.load(gpu, source, {
    ...engineOpts,
    weights: format,
    onProgress: (p) => progress(p.phase === 'upload' ? { ...p, phase: 'stream' } : p),
  });
  let storedBytes = 0;
  if (save) {
    try {
      const m = await saveQuantizedCopy(base, format, version!, expected, (sink) => engine.exportConverted(sink, source, { shardBytes: opts.shardBytes }), {
        ...storeOpts,
        signal: opts.signal,
        onProgress: (s) => progress({ phase: 'store', loadedBytes: s.storedBytes, totalBytes: s.totalBytes }),
      });
      storedBytes = m.totalBytes;
    } catch (e) {
      if (gpu.lost || opts.signal?.aborted) {
        engine.destroy();
        throw e;
      }
      save = false;
      warning = `The ${format} copy could not be saved, so the next start downloads the model again: ${(e as Error)?.message ?? e}`;
    }
  }
  return finish(engine, { start: 'cold', downloadedBytes: source.bytesFetched, stored: save ? 'quantized' : null, storedBytes }, save, warning);
}
