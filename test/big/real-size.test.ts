/**
 * Real sizes (run with `npm run test:big`; skipped otherwise, it takes a few minutes): a random-weight
 * checkpoint with Qwen3-0.6B's exact shape (bf16, Hugging Face layout, ~1.2 GB, written into /tmp by
 * scripts/make-random-checkpoint.mjs) is served by a local HTTP server with Range support. It loads
 * with q4 (streamed, GPU-quantized) and generates a few tokens on Node's WebGPU; converting it gives the
 * ~0.34 GB q4 form; loading that reads no safetensors byte and generates the same tokens. Sizes, times and
 * peak memory go to the console and /tmp/webdms-big/results.json (recorded in docs/real-models.md).
 */
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync, createReadStream } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, normalize } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FolderSink } from '../../cli/convert';
import { Engine } from '../../worker/engine/engine';
import { parseConfig } from '../../worker/model/config';
import { convertModel } from '../../worker/load/converted';
import { HttpSource } from '../../worker/load/source';
// @ts-expect-error: a plain .mjs script without type declarations
import { makeRandomCheckpoint, SHAPES } from '../../scripts/make-random-checkpoint.mjs';
import { testGpu } from '../gpu';
import { loadModel } from '../../worker/load/load-model';
import { listModels } from '../../worker/store';
import { MemoryBackend } from '../store/memory-backend';

const ROOT = process.env.WEBDMS_BIG_DIR ?? '/tmp/webdms-big';
const CKPT = 'qwen3-0.6b-random';
const CONV = 'qwen3-0.6b-q4-test';
const PROMPT = [151644, 872, 198, 9707, 11, 1879, 0];
const TOKENS = 3;
const results: Record<string, unknown> = {};

/** A static file server with HEAD and Range, counting the bytes it sends per file. */
function serve(root: string): Promise<{ server: Server; url: string; sent: Map<string, number> }> {
  const sent = new Map<string, number>();
  const server = createServer((req, res) => {
    const file = normalize(decodeURIComponent(new URL(req.url!, 'http://x').pathname)).replace(/^\/+/, '');
    const path = join(root, file);
    if (file.startsWith('..') || !existsSync(path) || !statSync(path).isFile()) {
      res.writeHead(404).end();
      return;
    }
    const size = statSync(path).size;
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0, end = m ? (m[2] ? Math.min(Number(m[2]), size - 1) : size - 1) : size - 1;
    const headers = { 'content-length': String(end - start + 1), 'accept-ranges': 'bytes', ...(m ? { 'content-range': `bytes ${start}-${end}/${size}` } : {}) };
    res.writeHead(m ? 206 : 200, headers);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    sent.set(file, (sent.get(file) ?? 0) + end - start + 1);
    createReadStream(path, { start, end }).pipe(res);
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, sent })));
}

/** Peak growth of JS memory (ArrayBuffers and heap) while `fn` runs. */
async function peakMemory<T>(fn: () => Promise<T>): Promise<{ value: T; arrayBuffers: number; heap: number; rss: number }> {
  const base = process.memoryUsage();
  let ab = 0, heap = 0, rss = 0;
  const sample = () => {
    const m = process.memoryUsage();
    ab = Math.max(ab, m.arrayBuffers - base.arrayBuffers);
    heap = Math.max(heap, m.heapUsed - base.heapUsed);
    rss = Math.max(rss, m.rss);
  };
  const timer = setInterval(sample, 10);
  try {
    const value = await fn();
    sample();
    return { value, arrayBuffers: ab, heap, rss };
  } finally {
    clearInterval(timer);
  }
}

const MB = (n: number) => Math.round(n / 1e5) / 10;

describe.skipIf(!process.env.WEBDMS_BIG)('real sizes: Qwen3-0.6B shape, random bf16 weights over HTTP', () => {
  let http: Awaited<ReturnType<typeof serve>>;
  let greedy: number[] = [];
  beforeAll(async () => {
    mkdirSync(ROOT, { recursive: true });
    if (!existsSync(join(ROOT, CKPT, 'model.safetensors.index.json'))) {
      const t0 = performance.now();
      makeRandomCheckpoint(join(ROOT, CKPT), SHAPES['qwen3-0.6b'], { seed: 1, shardBytes: 500e6 });
      results.checkpointSeconds = Math.round(performance.now() - t0) / 1000;
    }
    http = await serve(ROOT);
  }, 600_000);
  afterAll(async () => {
    await new Promise((ok) => http?.server.close(ok));
    writeFileSync(join(ROOT, 'results.json'), JSON.stringify(results, null, 2));
    console.log('real-size results:', JSON.stringify(results, null, 2));
  });

  it('loads the bf16 checkpoint with q4 (streamed, GPU-quantized) and generates a few tokens; JS memory stays bounded', async () => {
    const gpu = await testGpu();
    const checkpointBytes = JSON.parse(readFileSync(join(ROOT, CKPT, 'model.safetensors.index.json'), 'utf8')).metadata.total_size as number;
    http.sent.clear();
    const { value: engine, arrayBuffers, heap, rss } = await peakMemory(() => Engine.load(gpu, new HttpSource(http.url + CKPT + '/'), { weights: 'q4', maxContext: 64 }));
    const load = engine.loadStats!;
    const t0 = performance.now();
    const r = await engine.generate(PROMPT, { maxTokens: TOKENS, temperature: 0, stopIds: [] });
    greedy = r.ids;
    results.cold = {
      checkpointMB: MB(checkpointBytes), loadMs: Math.round(load.ms), bytesReadMB: MB(load.bytesRead), weightMB: MB(engine.info.weightBytes),
      peakArrayBuffersMB: MB(arrayBuffers), peakHeapMB: MB(heap), peakRssMB: MB(rss),
      prefillMs: Math.round(r.timing.prefillMs), decodeTokensPerSecond: r.timing.decodeTokensPerSecond, generateMs: Math.round(performance.now() - t0),
      adapter: gpu.caps.adapter,
    };
    engine.destroy();
    expect(r.ids).toHaveLength(TOKENS);
    expect(load.fromConverted).toBe(false);
    expect(load.bytesRead).toBeGreaterThanOrEqual(checkpointBytes);
    // The embedding alone is 311 MB of bf16 (622 MB as f32): nothing close to that is held in JS.
    expect(arrayBuffers).toBeLessThan(150e6);
    expect(heap).toBeLessThan(150e6);
  }, 900_000);

  it('converts to q4 (~0.34 GB of 64 MB shards) and the converted form loads without reading any safetensors byte, same tokens', async () => {
    const gpu = await testGpu();
    rmSync(join(ROOT, CONV), { recursive: true, force: true });
    const src = new HttpSource(http.url + CKPT + '/');
    const { config } = parseConfig(JSON.parse(await src.text('config.json')));
    const t0 = performance.now();
    const m = await convertModel(gpu, src, config, 'q4', new FolderSink(join(ROOT, CONV)));
    results.convert = { ms: Math.round(performance.now() - t0), shards: m.shards.length, bytesMB: MB(m.totalBytes), largestShardMB: MB(Math.max(...m.shards.map((s) => s.bytes))) };
    // 4.5 bits a weight (q4 codes and an f16 scale a group of 32) and the f32 norms: 336 MB.
    expect(m.totalBytes).toBeGreaterThan(0.33e9);
    expect(m.totalBytes).toBeLessThan(0.35e9);
    expect(Math.max(...m.shards.map((s) => s.bytes))).toBeLessThanOrEqual(64e6);

    for (const run of ['first', 'again'] as const) {
      http.sent.clear();
      const engine = await Engine.load(gpu, new HttpSource(http.url + CONV + '/'), { maxContext: 64 });
      const load = engine.loadStats!;
      const r = await engine.generate(PROMPT, { maxTokens: TOKENS, temperature: 0, stopIds: [] });
      engine.destroy();
      const served = [...http.sent.values()].reduce((a, b) => a + b, 0);
      results[`converted_${run}`] = { loadMs: Math.round(load.ms), bytesReadMB: MB(load.bytesRead), servedMB: MB(served), ids: r.ids };
      expect(load.fromConverted).toBe(true);
      expect([...http.sent.keys()].filter((f) => f.endsWith('.safetensors'))).toEqual([]);
      expect(load.bytesRead).toBeLessThan(0.45e9);
      expect(r.ids).toEqual(greedy);
    }
  }, 900_000);

  it('the worker path keeps only the q4 copy in the store; the second start reads no safetensors byte, same tokens', async () => {
    const gpu = await testGpu();
    const backend = new MemoryBackend();
    const base = http.url + CKPT + '/';
    const req = { model: base, weights: 'q4' as const, maxContext: 64 };
    http.sent.clear();
    const { value: cold, arrayBuffers, heap } = await peakMemory(() => loadModel(gpu, base, req, { spec: 'qwen3-0.6b-random', store: { backend } }));
    let r = await cold.engine.generate(PROMPT, { maxTokens: TOKENS, temperature: 0, stopIds: [] });
    cold.engine.destroy();
    expect(r.ids).toEqual(greedy);
    expect(cold.info.load).toMatchObject({ start: 'cold', stored: 'quantized', weights: 'q4' });
    expect((await backend.chunks.keys()).some((k) => k.includes('.safetensors'))).toBe(false);
    const [stored] = await listModels({ backend });
    expect(stored.weights).toBe('q4');
    expect(stored.bytes).toBeLessThan(0.45e9);
    // Each stored 16 MiB chunk is its own buffer (the store's bytes); beyond them, streaming and saving hold little.
    const storedBytes = stored.bytes;

    http.sent.clear();
    const warm = await loadModel(gpu, base, req, { spec: 'qwen3-0.6b-random', store: { backend } });
    r = await warm.engine.generate(PROMPT, { maxTokens: TOKENS, temperature: 0, stopIds: [] });
    warm.engine.destroy();
    expect(r.ids).toEqual(greedy);
    expect(warm.info.load).toMatchObject({ start: 'warm', downloadedBytes: 0 });
    expect([...http.sent.keys()].filter((f) => f.endsWith('.safetensors'))).toEqual([]);
    results.workerPath = {
      cold: { ms: Math.round(cold.info.load.ms), downloadedMB: MB(cold.info.load.downloadedBytes), storedMB: MB(storedBytes), peakHeapMB: MB(heap), peakArrayBuffersMB: MB(arrayBuffers) },
      warm: { ms: Math.round(warm.info.load.ms), readMB: MB(warm.info.load.readBytes), servedMB: MB([...http.sent.values()].reduce((a, b) => a + b, 0)) },
    };
    expect(heap).toBeLessThan(150e6);
    // The memory backend keeps the ~0.34 GB copy in JS: that, plus bounded streaming buffers.
    expect(arrayBuffers).toBeLessThan(storedBytes + 150e6);
  }, 900_000);
});
