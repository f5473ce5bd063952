/**
 * A Llama checkpoint packaged the FastDMS way (shisa-ai/Llama-3.2-1B-DMS-8x): no dms_* key in config.json,
 * a dms_metadata.json beside the weights. Built here from the golden Llama fixture (test/fixtures/golden/llama)
 * plus that file. The engine must read it from a folder, over HTTP (a Node http server) and from the weight
 * store (also offline, and in the quantized copy), and its decisions, evictions and logits must match the CPU
 * reference under FastDMS's rule: token t's own query decides token t (no shift), the borrowed channel
 * (the last of the first query head of each group, read from q before RoPE: Llama has no q_norm) is
 * zeroed before RoPE only. Also a real pretrained Llama (../shared/models/stories260K, as test/engine/stories260k.test.ts
 * uses it; skipped when absent) at q4 with such a file, its offset set so that half the decisions evict.
 */
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../worker/engine/engine';
import { loadModel } from '../../worker/load/load-model';
import { COPIED_FILES } from '../../worker/load/converted';
import { HttpSource } from '../../worker/load/source';
import { FolderSource } from '../../worker/load/source-node';
import { parseDmsMetadata, readModelConfig } from '../../worker/model/config';
import type { ModelConfig } from '../../worker/model/types';
import { dmsVisibility, referenceForward, type Tensors } from '../../worker/reference/model';
import { listModels, StoredSource } from '../../worker/store';
import { OPTIONAL_FILES } from '../../worker/store/stored-source';
import { testGpu } from '../gpu';
import { asStored, loadReference, maxAbsDiff } from '../engine/helpers';
import { startHub, type Hub } from '../store/hub-server';
import { MemoryBackend } from '../store/memory-backend';
import { serveFiles, type TestServer } from './helpers';

const FIXTURE = new URL('../fixtures/golden/llama/', import.meta.url).pathname;
const IDS = (JSON.parse(readFileSync(join(FIXTURE, 'golden.json'), 'utf8')) as { prompt_ids: number[] }).prompt_ids.slice(0, 30);
const WINDOW = 3;
const METADATA = { config: { window_size: WINDOW, alpha_scale: 100, alpha_offset: 5, target_cr: 4, borrowed_query_channel: -1 }, source: 'test' };

let dir: string;
let files: Map<string, Uint8Array>;
let tensors: Tensors;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fastdms-llama-'));
  for (const f of readdirSync(FIXTURE)) if (f !== 'golden.json') copyFileSync(join(FIXTURE, f), join(dir, f));
  writeFileSync(join(dir, 'dms_metadata.json'), JSON.stringify(METADATA));
  files = new Map(readdirSync(dir).map((f) => [f, new Uint8Array(readFileSync(join(dir, f)))]));
  tensors = (await loadReference(FIXTURE)).tensors;
});

/** `config` with the DMS settings of a dms_metadata.json holding `meta`. */
function parseConfigWith(config: ModelConfig, meta: Record<string, unknown>): ModelConfig {
  return { ...config, dms: parseDmsMetadata(meta, config.headDim) };
}

/** What the CPU reference says for `config` (read with its dms_metadata.json). */
async function expected(source: FolderSource | HttpSource) {
  const { config } = await readModelConfig(source);
  expect(config.dms).toEqual({ windowSize: WINDOW, alphaScale: 100, alphaOffset: 5, cr: 4, separateAlpha: false, channel: 15, convention: 'fastdms' });
  const full = referenceForward(config, tensors, IDS, undefined);
  const masked = referenceForward(config, tensors, IDS, dmsVisibility(WINDOW, config.numKvHeads, 'fastdms'));
  return { config, full, masked };
}

/** The engine's logits under --kv full and --kv dms (prefill chunks of 5, then one token a step) and its residency. */
async function check(load: (kv: 'full' | 'dms') => Promise<Engine>, source: FolderSource | HttpSource): Promise<void> {
  const { config, full, masked } = await expected(source);
  const alpha = masked.alpha!;
  // The decisions mix, and the rule matters: NVIDIA's shift by one would hide other keys.
  const decisions = alpha.flatMap((a) => Array.from(a));
  expect(decisions.some((v) => v > 0) && decisions.some((v) => v <= 0)).toBe(true);
  expect(maxAbsDiff(masked.logits, full.logits)).toBeGreaterThan(1e-3);
  const shifted = referenceForward(config, tensors, IDS, dmsVisibility(WINDOW, config.numKvHeads, 'nvidia'));
  expect(maxAbsDiff(masked.logits, shifted.logits)).toBeGreaterThan(1e-3);

  const e1 = await load('full');
  expect(e1.config.dms?.convention).toBe('fastdms');
  expect(maxAbsDiff(await e1.logits(IDS), full.logits)).toBeLessThan(2e-3);
  e1.destroy();
  const e2 = await load('dms');
  expect(e2.info.dms).toEqual({ windowSize: WINDOW, cr: 4, rule: 'fastdms' });
  expect(maxAbsDiff(await e2.logits(IDS, 5), masked.logits)).toBeLessThan(2e-3);
  expect(maxAbsDiff(await e2.logits(IDS, 1), masked.logits)).toBeLessThan(2e-3);
  // Evictions: after the last token, key j is resident iff it is in the window or its own decision keeps it.
  const map = await e2.kvResidency();
  expect(map.tokens).toBe(IDS.length);
  const T = IDS.length, H = config.numKvHeads;
  for (let l = 0; l < config.numLayers; l++) {
    for (let h = 0; h < H; h++) {
      const got = Array.from(map.bits.subarray((l * H + h) * T, (l * H + h + 1) * T));
      const want = IDS.map((_, j) => (T - 1 - j <= WINDOW || !(alpha[l][j * H + h] > 0) ? 1 : 0));
      expect(got, `layer ${l}, KV head ${h}`).toEqual(want);
    }
  }
  e2.destroy();
}

describe('FastDMS packaging (dms_metadata.json) on a Llama', () => {
  it('from a folder: decisions, evictions and logits match the reference', async () => {
    const gpu = await testGpu();
    await check((kv) => Engine.load(gpu, new FolderSource(dir), { weights: 'f32', kv, kvDtype: 'f32', prefillChunk: 8 }), new FolderSource(dir));
  });

  it("parallel chains: a fork carries the prompt's last decision, so every chain matches the reference", async () => {
    const gpu = await testGpu();
    const { config, masked } = await expected(new FolderSource(dir));
    const H = config.numKvHeads, V = config.vocabSize, P = 20;
    // The prompt's last token is evicted somewhere: a fork that lost its decision would keep it.
    expect(masked.alpha!.some((a) => Array.from({ length: H }, (_, h) => a[(P - 1) * H + h]).some((v) => v > 0))).toBe(true);
    const e = await Engine.load(gpu, new FolderSource(dir), { weights: 'f32', kv: 'dms', kvDtype: 'f32', prefillChunk: 8, sequences: 3 });
    for (let i = 0; i < P; i += 8) e.stepSequences([{ seq: 0, ids: IDS.slice(i, Math.min(P, i + 8)) }]);
    e.forkSequence(0, [1, 2]);
    for (let t = P; t < IDS.length; t++) {
      e.stepSequences([0, 1, 2].map((seq) => ({ seq, ids: [IDS[t]] })));
      const rows = await e.readLogits(3);
      for (let r = 0; r < 3; r++) expect(maxAbsDiff(rows.subarray(r * V, (r + 1) * V), masked.logits.subarray(t * V, (t + 1) * V)), `chain ${r}, position ${t}`).toBeLessThan(2e-3);
    }
    e.destroy();
  });

  const STORIES = new URL('../../../shared/models/stories260K/', import.meta.url).pathname;
  it.skipIf(!existsSync(STORIES))('a real pretrained Llama (stories260K) with a dms_metadata.json, q4: decisions and logits match the reference', async () => {
    const gpu = await testGpu();
    const real = mkdtempSync(join(tmpdir(), 'fastdms-stories-'));
    for (const f of ['config.json', 'model.safetensors']) copyFileSync(join(STORIES, f), join(real, f));
    const ids = [1, 403, 407, 261, 378, 430, 259, 256, 17, 300, 45, 9, 122, 1, 77, 310, 12, 403, 33, 280];
    const ref = await loadReference(STORIES);
    const tensors = asStored(ref.config, ref.tensors, 'q4');
    // The offset at the median of scale·q over every (layer, token, KV head): half the decisions evict.
    const probe = parseConfigWith(ref.config, { window_size: 4, alpha_offset: 0 });
    const logits0 = referenceForward(probe, tensors, ids).alpha!.flatMap((a) => Array.from(a)).sort((a, b) => a - b);
    const offset = logits0[logits0.length >> 1];
    writeFileSync(join(real, 'dms_metadata.json'), JSON.stringify({ dms: { window_size: 4, alpha_offset: offset } }));
    const { config } = await readModelConfig(new FolderSource(real));
    expect(config.dms).toMatchObject({ windowSize: 4, alphaOffset: offset, channel: 7, convention: 'fastdms' });
    const masked = referenceForward(config, tensors, ids, dmsVisibility(4, config.numKvHeads, 'fastdms'));
    const full = referenceForward(config, tensors, ids);
    expect(maxAbsDiff(masked.logits, full.logits)).toBeGreaterThan(1e-2);
    const e = await Engine.load(gpu, new FolderSource(real), { weights: 'q4', kv: 'dms', kvDtype: 'f32', prefillChunk: 8 });
    expect(maxAbsDiff(await e.logits(ids, 6), masked.logits)).toBeLessThan(2e-3);
    expect(maxAbsDiff(await e.logits(ids, 1), masked.logits)).toBeLessThan(2e-3);
    const map = await e.kvResidency();
    const T = ids.length, H = config.numKvHeads;
    for (let l = 0; l < config.numLayers; l++) {
      for (let h = 0; h < H; h++) {
        const got = Array.from(map.bits.subarray((l * H + h) * T, (l * H + h + 1) * T));
        expect(got, `layer ${l}, KV head ${h}`).toEqual(ids.map((_, j) => (T - 1 - j <= 4 || !(masked.alpha![l][j * H + h] > 0) ? 1 : 0)));
      }
    }
    e.destroy();
  });

  describe('over HTTP', () => {
    let server: TestServer;
    afterAll(async () => server?.close());

    it('from a URL: the same; without the file no DMS; another HTTP error on it stops the load naming the file', async () => {
      const gpu = await testGpu();
      server = await serveFiles(files);
      await check((kv) => Engine.load(gpu, new HttpSource(server.url), { weights: 'f32', kv, kvDtype: 'f32', prefillChunk: 8 }), new HttpSource(server.url));
      await server.close();

      const without = new Map(files);
      without.delete('dms_metadata.json');
      server = await serveFiles(without);
      const plain = await Engine.load(gpu, new HttpSource(server.url), { weights: 'f32', kv: 'full' });
      expect(plain.config.dms).toBeNull();
      plain.destroy();
      await expect(Engine.load(gpu, new HttpSource(server.url), { weights: 'f32', kv: 'dms' })).rejects.toThrow(/needs a DMS checkpoint/);
      await server.close();

      server = await serveFiles(files, { status: { 'dms_metadata.json': 500 } });
      await expect(Engine.load(gpu, new HttpSource(server.url), { weights: 'f32', kv: 'full' })).rejects.toThrow(/HTTP 500.*dms_metadata\.json/);
      await server.close();

      server = await serveFiles(new Map([...files, ['dms_metadata.json', new TextEncoder().encode(JSON.stringify({ config: { window_size: 3, borrowed_query_channel: 16 } }))]]));
      await expect(Engine.load(gpu, new HttpSource(server.url), { weights: 'f32', kv: 'full' })).rejects.toThrow(
        /dms_metadata\.json: "config": "borrowed_query_channel" \(16\) is outside the query head of 16 channels.*127\.0\.0\.1/);
    });
  });

  describe('the weight store', () => {
    let hub: Hub;
    beforeAll(async () => {
      hub = await startHub({ 'shisa-test/llama-dms': { commit: 'c1', files } });
    });
    afterAll(async () => hub?.close());
    const offline = (async () => {
      throw new TypeError('fetch failed');
    }) as typeof fetch;

    it('a copy stored before dms_metadata.json was read gets it at the next online start (only that file is fetched)', async () => {
      const backend = new MemoryBackend();
      const base = hub.base('shisa-test/llama-dms');
      const store = { backend, chunkSize: 16 * 1024, retryDelayMs: 1 };
      // The store of an older version: it did not know the file, so neither kept it nor recorded it as absent.
      const at = OPTIONAL_FILES.indexOf('dms_metadata.json');
      OPTIONAL_FILES.splice(at, 1);
      try {
        const old = await StoredSource.open(base, store);
        expect(await old.exists('dms_metadata.json')).toBe(false);
      } finally {
        OPTIONAL_FILES.splice(at, 0, 'dms_metadata.json');
      }
      const mark = hub.hits.length;
      const now = await StoredSource.open(base, store);
      expect(now).toBeInstanceOf(StoredSource);
      expect(await now.exists('dms_metadata.json')).toBe(true);
      expect((await readModelConfig(now)).config.dms?.convention).toBe('fastdms');
      const gets = hub.hits.slice(mark).filter((h) => h.method === 'GET').map((h) => h.file);
      expect(gets.filter((f) => f.endsWith('.safetensors'))).toEqual([]);
      expect(gets).toContain('dms_metadata.json');
    });

    it('a q4 copy saved before dms_metadata.json was copied gets it at the next online warm start, and keeps it offline', async () => {
      const gpu = await testGpu();
      const backend = new MemoryBackend();
      const base = hub.base('shisa-test/llama-dms');
      const store = { backend, chunkSize: 16 * 1024, retryDelayMs: 1 };
      const req = { model: 'shisa-test/llama-dms', weights: 'q4' as const, kv: 'full' as const };
      const at = COPIED_FILES.indexOf('dms_metadata.json');
      COPIED_FILES.splice(at, 1);
      try {
        const old = await loadModel(gpu, base, req, { spec: 'shisa-test/llama-dms', store });
        expect(old.info.load.stored).toBe('quantized');
        old.engine.destroy();
      } finally {
        COPIED_FILES.splice(at, 0, 'dms_metadata.json');
      }
      // The old copy: a warm start without DMS (offline nothing can be fetched).
      const stale = await loadModel(gpu, base, req, { spec: 'shisa-test/llama-dms', store: { ...store, fetchImpl: offline } });
      expect(stale.info.load.start).toBe('warm');
      expect(stale.engine.config.dms).toBeNull();
      stale.engine.destroy();
      const mark = hub.hits.length;
      const online = await loadModel(gpu, base, { ...req, kv: 'dms' }, { spec: 'shisa-test/llama-dms', store });
      expect(online.info.load.start).toBe('warm');
      expect(online.engine.config.dms?.convention).toBe('fastdms');
      expect(hub.hits.slice(mark).filter((h) => h.file.endsWith('.safetensors') && h.method === 'GET')).toEqual([]);
      online.engine.destroy();
      const off = await loadModel(gpu, base, { ...req, kv: 'dms' }, { spec: 'shisa-test/llama-dms', store: { ...store, fetchImpl: offline } });
      expect(off.engine.config.dms).toMatchObject({ windowSize: WINDOW, convention: 'fastdms' });
      off.engine.destroy();
    });

    for (const weights of ['f32', 'q4'] as const) {
      it(`keeps dms_metadata.json with the model (${weights === 'f32' ? 'the published files' : 'the quantized copy'}): an offline reload still runs DMS`, async () => {
        const gpu = await testGpu();
        const backend = new MemoryBackend();
        const base = hub.base('shisa-test/llama-dms');
        const store = { backend, chunkSize: 16 * 1024, retryDelayMs: 1 };
        const first = await loadModel(gpu, base, { model: 'shisa-test/llama-dms', weights, kv: 'dms' }, { spec: 'shisa-test/llama-dms', store });
        expect(first.info.load.stored).toBe(weights === 'f32' ? 'checkpoint' : 'quantized');
        expect(first.engine.config.dms?.convention).toBe('fastdms');
        const online = await first.engine.logits(IDS.slice(0, 12), 1);
        first.engine.destroy();
        const models = await listModels({ backend });
        expect(models).toHaveLength(1);

        const again = await loadModel(gpu, base, { model: 'shisa-test/llama-dms', weights, kv: 'dms' }, { spec: 'shisa-test/llama-dms', store: { ...store, fetchImpl: offline } });
        expect(again.info.load.start).toBe('warm');
        expect(again.engine.config.dms).toMatchObject({ windowSize: WINDOW, convention: 'fastdms', channel: 15 });
        expect(maxAbsDiff(await again.engine.logits(IDS.slice(0, 12), 1), online)).toBe(0);
        again.engine.destroy();
      });
    }
  });
});
