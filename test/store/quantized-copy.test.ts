/**
 * The worker's load path for a plain checkpoint that runs quantized (worker/load/load-model.ts): the first
 * start streams the safetensors onto the GPU and stores only the quantized copy; the next start reads
 * that copy and requests no safetensors byte. Also: the copy equals what `dms convert` writes, a new
 * remote version rebuilds it, one of the previous packing is served as is, offline serves it, a full quota refuses before downloading (or runs
 * without storing), a damaged copy is deleted with a clear error, f32 keeps the published files.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadModel, type LoadModelOptions } from '../../worker/load/load-model';
import { convertModel, MANIFEST_FILE, type ConvertedManifest, type ConvertSink } from '../../worker/load/converted';
import { parseConfig } from '../../worker/model/config';
import { HttpSource } from '../../worker/load/source';
import { listModels, StorageQuotaError, StoredSource } from '../../worker/store';
import { checkpointVersion, openQuantizedCopy, quantizedKey, saveQuantizedCopy } from '../../worker/store/quantized-copy';
import { testGpu } from '../gpu';
import { asVersion1 } from '../load/converted-v1';
import { startHub, type Hub } from './hub-server';
import { MemoryBackend } from './memory-backend';

const dir = new URL('../fixtures/golden/qwen3/', import.meta.url).pathname;
const golden = JSON.parse(readFileSync(`${dir}golden.json`, 'utf8')) as { prompt_ids: number[] };
const REPO = 'golden/qwen3';

let hub: Hub;
let backend: MemoryBackend;
beforeAll(async () => {
  hub = await startHub();
});
afterAll(async () => {
  await hub.close();
});
beforeEach(() => {
  const files = new Map<string, Uint8Array>();
  for (const f of readdirSync(dir)) if (f !== 'golden.json') files.set(f, new Uint8Array(readFileSync(dir + f)));
  hub.repos.set(REPO, { commit: 'c1', files });
  hub.resetFaults();
  backend = new MemoryBackend();
});

const opts = (o: Partial<LoadModelOptions> = {}): LoadModelOptions => ({
  spec: REPO,
  store: { backend, chunkSize: 16 * 1024, retryDelayMs: 1 },
  engine: { maxPartBytes: 8 * 1024, sliceBytes: 4096 },
  shardBytes: 20_000,
  ...o,
});
const hitsSince = (n: number) => hub.hits.slice(n);
const safetensorsHits = (n: number) => hitsSince(n).filter((h) => h.file.endsWith('.safetensors'));

async function greedy(engine: Awaited<ReturnType<typeof loadModel>>['engine']): Promise<number[]> {
  return (await engine.generate(golden.prompt_ids, { maxTokens: 6, temperature: 0, stopIds: [] })).ids;
}

describe('quantized copy of a streamed checkpoint', () => {
  it('stores only the q4 copy on the first start; the second start reads it and no safetensors', async () => {
    const gpu = await testGpu();
    const base = hub.base(REPO);
    const phases = new Set<string>();
    const first = await loadModel(gpu, base, { model: REPO, weights: 'q4' }, opts({ onProgress: (p) => phases.add(p.phase) }));
    expect(first.info.load).toMatchObject({ start: 'cold', stored: 'quantized', weights: 'q4' });
    expect(phases).toContain('stream');
    expect(phases).toContain('store');
    const checkpoint = readFileSync(`${dir}model.safetensors`).byteLength;
    expect(first.info.load.downloadedBytes).toBeGreaterThanOrEqual(checkpoint);
    expect(safetensorsHits(0).length).toBeGreaterThan(0);
    // Nothing of the checkpoint is stored; the copy is the converted form.
    const chunkKeys = await backend.chunks.keys();
    expect(chunkKeys.some((k) => k.includes('.safetensors'))).toBe(false);
    expect(chunkKeys.some((k) => k.includes(MANIFEST_FILE))).toBe(true);
    const listed = await listModels({ backend });
    expect(listed).toHaveLength(1);
    expect(listed[0]).toMatchObject({ id: quantizedKey(base, 'q4'), name: REPO, weights: 'q4', complete: true, bytes: first.info.load.storedBytes });
    expect(listed[0].bytes).toBeLessThan(checkpoint / 2);
    const ids = await greedy(first.engine);
    first.engine.destroy();

    const mark = hub.hits.length;
    const second = await loadModel(gpu, base, { model: REPO, weights: 'q4' }, opts());
    expect(second.info.load).toMatchObject({ start: 'warm', stored: 'quantized', downloadedBytes: 0, weights: 'q4' });
    expect(safetensorsHits(mark)).toEqual([]);
    // Only the version check and the pre-flight's config/DMS settings/manifest probes went out.
    expect(hitsSince(mark).every((h) => h.file === 'config.json' || h.file === 'dms_metadata.json' || h.file === MANIFEST_FILE)).toBe(true);
    expect(second.engine.loadStats!.fromConverted).toBe(true);
    expect(second.engine.loadStats!.bytesRead).toBeLessThan(checkpoint / 2);
    expect(await greedy(second.engine)).toEqual(ids);
    second.engine.destroy();
  });

  it('stores the same bytes that dms convert writes', async () => {
    const gpu = await testGpu();
    const base = hub.base(REPO);
    const loaded = await loadModel(gpu, base, { model: REPO, weights: 'q4' }, opts());
    loaded.engine.destroy();
    const files = new Map<string, Uint8Array>();
    let open = '';
    let parts: Uint8Array[] = [];
    const sink: ConvertSink = {
      async openShard(f) { open = f; parts = []; },
      async write(b) { parts.push(b.slice()); },
      async closeShard() { files.set(open, Buffer.concat(parts)); return ''; },
      async writeFile(f, b) { files.set(f, b); },
    };
    const source = new HttpSource(base);
    const { config } = parseConfig(JSON.parse(await source.text('config.json')));
    const manifest = await convertModel(gpu, source, config, 'q4', sink, { shardBytes: 20_000, maxPartBytes: 8 * 1024, sliceBytes: 4096 });
    const copy = await openQuantizedCopy(base, ['q4'], null, { backend });
    expect(copy).toBeInstanceOf(StoredSource);
    const stored = JSON.parse(await copy!.text(MANIFEST_FILE));
    expect(stored.matrices).toEqual(manifest.matrices);
    expect(stored.vectors).toEqual(manifest.vectors);
    expect(stored.shards.map((s: { file: string; bytes: number }) => [s.file, s.bytes])).toEqual(manifest.shards.map((s) => [s.file, s.bytes]));
    for (const s of manifest.shards) {
      expect(Buffer.from(await copy!.read(s.file, 0, s.bytes)).equals(Buffer.from(files.get(s.file)!))).toBe(true);
    }
  });

  it('rebuilds the copy when the checkpoint has a new version, and serves it offline with a warning', async () => {
    const gpu = await testGpu();
    const base = hub.base(REPO);
    (await loadModel(gpu, base, { model: REPO, weights: 'q4' }, opts())).engine.destroy();
    hub.repos.get(REPO)!.commit = 'c2';
    const mark = hub.hits.length;
    const again = await loadModel(gpu, base, { model: REPO, weights: 'q4' }, opts());
    expect(again.info.load.start).toBe('cold');
    expect(safetensorsHits(mark).length).toBeGreaterThan(0);
    again.engine.destroy();
    const listed = await listModels({ backend });
    expect(listed).toHaveLength(1);
    expect(listed[0].commit).toBe('c2');

    const offline = (async () => {
      throw new TypeError('fetch failed');
    }) as typeof fetch;
    const off = await loadModel(gpu, base, { model: REPO, weights: 'q4' }, opts({ store: { backend, fetchImpl: offline, retryDelayMs: 1 } }));
    expect(off.info.load).toMatchObject({ start: 'warm', stored: 'quantized' });
    expect(off.info.storageWarning).toMatch(/without checking .* for updates/);
    off.engine.destroy();
  });

  it('serves a copy stored in the previous packing (converted version 1, f32 scales) without downloading anything again', async () => {
    const gpu = await testGpu();
    const base = hub.base(REPO);
    const first = await loadModel(gpu, base, { model: REPO, weights: 'q4' }, opts());
    const want = await greedy(first.engine);
    first.engine.destroy();
    // The same copy stored again as an engine before 2026-12-08 wrote it.
    const version = (await checkpointVersion(base))!;
    const copy = (await openQuantizedCopy(base, ['q4'], version, { backend }))!;
    const files = asVersion1(new Map(await Promise.all(copy.manifest.files.map(async (f) => [f.name, await copy.read(f.name, 0, f.size)] as const))));
    const old = JSON.parse(new TextDecoder().decode(files.get(MANIFEST_FILE)!)) as ConvertedManifest;
    await saveQuantizedCopy(base, 'q4', version, old.totalBytes, async (sink) => {
      for (const [name, bytes] of files) {
        if (name === MANIFEST_FILE) continue;
        if (name.endsWith('.bin')) {
          await sink.openShard(name);
          await sink.write(bytes);
          await sink.closeShard();
        } else await sink.writeFile(name, bytes);
      }
      await sink.writeFile(MANIFEST_FILE, files.get(MANIFEST_FILE)!);
      return old;
    }, { backend });

    const mark = hub.hits.length;
    const again = await loadModel(gpu, base, { model: REPO, weights: 'q4' }, opts());
    expect(again.info.load).toMatchObject({ start: 'warm', stored: 'quantized' });
    expect(again.info.load.storedBytes).toBeGreaterThan(copy.manifest.totalBytes); // the f32 scales
    expect(safetensorsHits(mark)).toEqual([]);
    expect(await greedy(again.engine)).toEqual(want);
    again.engine.destroy();
  });

  it('refuses before downloading when the copy cannot fit the quota, or runs without storing on request', async () => {
    const gpu = await testGpu();
    const base = hub.base(REPO);
    backend.quota = 10_000;
    const mark = hub.hits.length;
    const err = await loadModel(gpu, base, { model: REPO, weights: 'q4' }, opts()).catch((e) => e);
    expect(err).toBeInstanceOf(StorageQuotaError);
    expect((err as Error).message).toMatch(/storage/i);
    expect(safetensorsHits(mark)).toEqual([]);

    const run = await loadModel(gpu, base, { model: REPO, weights: 'q4', memoryFallback: true }, opts());
    expect(run.info.load).toMatchObject({ start: 'cold', stored: null, storedBytes: 0 });
    expect(run.info.stored).toBe(false);
    expect(run.info.storageWarning).toBeTruthy();
    expect(await backend.chunks.keys()).toEqual([]);
    run.engine.destroy();
  });

  it('deletes a damaged copy with a clear error; the next start rebuilds it', async () => {
    const gpu = await testGpu();
    const base = hub.base(REPO);
    (await loadModel(gpu, base, { model: REPO, weights: 'q4' }, opts())).engine.destroy();
    const key = (await backend.chunks.keys()).find((k) => k.includes('webdms-00000.bin'))!;
    const rec = (await backend.chunks.get<{ data: ArrayBuffer; size: number; sha256: string }>(key))!;
    new Uint8Array(rec.data)[5] ^= 0xff;
    await backend.chunks.set(key, rec);
    const err = await loadModel(gpu, base, { model: REPO, weights: 'q4' }, opts()).catch((e) => e);
    expect((err as Error).message).toMatch(/q4 copy .* was deleted; load the model again/);
    expect(await listModels({ backend })).toEqual([]);
    const again = await loadModel(gpu, base, { model: REPO, weights: 'q4' }, opts());
    expect(again.info.load).toMatchObject({ start: 'cold', stored: 'quantized' });
    again.engine.destroy();
  });

  it('a cancelled cold start stops streaming, frees its GPU memory and stores nothing', async () => {
    const gpu = await testGpu();
    const base = hub.base(REPO);
    const before = gpu.bytes('w:');
    const ctl = new AbortController();
    const mark = hub.hits.length;
    const err = await loadModel(gpu, base, { model: REPO, weights: 'q4' }, opts({
      signal: ctl.signal,
      onProgress: (p) => {
        if (p.phase === 'stream' && p.loadedBytes > 0) ctl.abort(new Error('cancelled by the test'));
      },
    })).catch((e) => e);
    expect((err as Error).message).toBe('cancelled by the test');
    const reads = safetensorsHits(mark).filter((h) => h.method === 'GET').length;
    expect(reads).toBeGreaterThan(0);
    // The checkpoint is ~340 KB in 4 KiB slices: a finished load would have made ~80 reads.
    expect(reads).toBeLessThan(10);
    expect(gpu.bytes('w:')).toBe(before);
    expect(await backend.chunks.keys()).toEqual([]);
  });

  it('keeps the published files when the model runs unquantized (f32)', async () => {
    const gpu = await testGpu();
    const base = hub.base(REPO);
    const first = await loadModel(gpu, base, { model: REPO, weights: 'f32' }, opts());
    expect(first.info.load).toMatchObject({ start: 'cold', stored: 'checkpoint', weights: 'f32' });
    first.engine.destroy();
    const second = await loadModel(gpu, base, { model: REPO, weights: 'f32' }, opts());
    expect(second.info.load).toMatchObject({ start: 'warm', stored: 'checkpoint', downloadedBytes: 0 });
    second.engine.destroy();
    expect((await backend.chunks.keys()).some((k) => k.includes('model.safetensors'))).toBe(true);
  });
});
