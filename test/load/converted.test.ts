/**
 * The converted form (worker/load/converted.ts, `dms convert`): a random checkpoint converted with small
 * shards and small parts round-trips to identical weights and logits, from a folder, over HTTP (Range
 * reads) and through the weight store, reading only the converted shards even when the original
 * safetensors sit beside them; version 1 of the format (f32 scales) still loads.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FolderSink } from '../../cli/convert';
import { Engine } from '../../worker/engine/engine';
import type { ModelWeights } from '../../worker/load/weights';
import { parseConfig } from '../../worker/model/config';
import { convertModel, MANIFEST_FILE, type ConvertedManifest } from '../../worker/load/converted';
import { HttpSource } from '../../worker/load/source';
import { FolderSource } from '../../worker/load/source-node';
import type { WeightFormat } from '../../worker/model/types';
import { StoredSource } from '../../worker/store';
// @ts-expect-error: a plain .mjs script without type declarations
import { makeRandomCheckpoint } from '../../scripts/make-random-checkpoint.mjs';
import { testGpu } from '../gpu';
import { startHub, type Hub } from '../store/hub-server';
import { MemoryBackend } from '../store/memory-backend';
import { asVersion1 } from './converted-v1';
import { expectSameBuffers, PART, SMALL_QWEN3 } from './weights-helpers';

const PROMPT = [3, 1000, 2999, 42, 7, 3000, 12];
const weightsOf = (e: Engine) => (e as unknown as { weights: ModelWeights }).weights;

let dir: string;
let hub: Hub;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'webdms-conv-'));
  makeRandomCheckpoint(join(dir, 'ckpt'), SMALL_QWEN3, { seed: 11, shardBytes: 200_000 });
  hub = await startHub();
});
afterAll(async () => {
  await hub.close();
  rmSync(dir, { recursive: true, force: true });
});

async function convert(format: WeightFormat, out: string, shardBytes: number): Promise<ConvertedManifest> {
  const gpu = await testGpu();
  const src = new FolderSource(join(dir, 'ckpt'));
  const { config } = parseConfig(JSON.parse(await src.text('config.json')));
  return convertModel(gpu, src, config, format, new FolderSink(out), { shardBytes, maxPartBytes: PART, sliceBytes: 5000 });
}

describe('converted models', () => {
  for (const format of ['q4', 'q8', 'f16'] as WeightFormat[]) {
    it(`${format}: convert, then load from the folder: same buffers and logits as the streaming load, no safetensors read`, async () => {
      const gpu = await testGpu();
      const out = join(dir, `conv-${format}`);
      const m = await convert(format, out, 40_000);
      // The manifest's shards: at most 40 kB, their SHA-256 and sizes as written; config copied.
      expect(m.shards.length).toBeGreaterThan(3);
      for (const s of m.shards) {
        const bytes = readFileSync(join(out, s.file));
        expect(bytes.length).toBe(s.bytes);
        expect(s.bytes).toBeLessThanOrEqual(40_000);
        expect(createHash('sha256').update(bytes).digest('hex')).toBe(s.sha256);
      }
      expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).vocab_size).toBe(3001);
      expect(m.matrices.embed.pieces.length).toBeGreaterThan(1);
      const onDisk = readdirSync(out).filter((f) => f.endsWith('.bin')).reduce((n, f) => n + statSync(join(out, f)).size, 0);
      expect(onDisk).toBe(m.totalBytes);

      const plain = await Engine.load(gpu, new FolderSource(join(dir, 'ckpt')), { weights: format, maxPartBytes: PART, maxContext: 32 });
      const conv = await Engine.load(gpu, new FolderSource(out), { maxPartBytes: PART, maxContext: 32 });
      try {
        expect(conv.info.weights).toBe(format);
        expect(conv.loadStats!.fromConverted).toBe(true);
        expect(plain.loadStats!.fromConverted).toBe(false);
        // Read: the converted shards (+ JSON), far less than the bf16 checkpoint for q4/q8.
        expect(conv.loadStats!.bytesRead).toBeGreaterThanOrEqual(m.totalBytes);
        expect(conv.loadStats!.bytesRead).toBeLessThan(m.totalBytes + 10_000);
        if (format !== 'f16') expect(conv.loadStats!.bytesRead).toBeLessThan(plain.loadStats!.bytesRead * 0.6);
        await expectSameBuffers(gpu, weightsOf(conv), weightsOf(plain));
        const a = await conv.logits(PROMPT), b = await plain.logits(PROMPT);
        expect(a.findIndex((x, i) => x !== b[i])).toBe(-1);
      } finally {
        plain.destroy();
        conv.destroy();
      }
      // Other part sizes at load than at conversion: pieces are re-split, logits unchanged.
      const other = await Engine.load(gpu, new FolderSource(out), { maxPartBytes: 3 * PART + 16, maxContext: 32 });
      const ref = await Engine.load(gpu, new FolderSource(join(dir, 'ckpt')), { weights: format, maxPartBytes: 3 * PART + 16, maxContext: 32 });
      try {
        await expectSameBuffers(gpu, weightsOf(other), weightsOf(ref));
      } finally {
        other.destroy();
        ref.destroy();
      }
    });
  }

  it('reads version 1 of the format (q8/q4 scales as f32, before 2026-12-08) to the same buffers, and refuses an unknown version', async () => {
    const gpu = await testGpu();
    const folder = (out: string) => new Map(readdirSync(out).map((f) => [f, new Uint8Array(readFileSync(join(out, f)))] as const));
    const manifest = (files: Map<string, Uint8Array>) => JSON.parse(new TextDecoder().decode(files.get(MANIFEST_FILE)!)) as ConvertedManifest;
    for (const format of ['q4', 'q8'] as WeightFormat[]) {
      const out = join(dir, `conv-${format}`);
      if (!readdirSync(dir).includes(`conv-${format}`)) await convert(format, out, 40_000);
      const files = folder(out);
      const v1 = asVersion1(files);
      expect(manifest(v1).version).toBe(1);
      expect(manifest(v1).totalBytes).toBeGreaterThan(manifest(files).totalBytes); // f32 scales: 4 bytes a group, not 2
      hub.repos.set(`test/v1-${format}`, { commit: 'v1', files: v1 });
      const old = await Engine.load(gpu, new HttpSource(hub.base(`test/v1-${format}`)), { maxPartBytes: PART, maxContext: 32 });
      const cur = await Engine.load(gpu, new FolderSource(out), { maxPartBytes: PART, maxContext: 32 });
      try {
        expect(old.loadStats!.fromConverted).toBe(true);
        await expectSameBuffers(gpu, weightsOf(old), weightsOf(cur));
      } finally {
        old.destroy();
        cur.destroy();
      }
    }
    const future = folder(join(dir, 'conv-q4'));
    future.set(MANIFEST_FILE, new TextEncoder().encode(JSON.stringify({ ...manifest(future), version: 3 })));
    hub.repos.set('test/v3', { commit: 'v3', files: future });
    await expect(Engine.load(gpu, new HttpSource(hub.base('test/v3')), {})).rejects.toThrow(/is version 3; this engine reads versions 1 and 2: convert the model again/);
  });

  it('served over HTTP and through the weight store beside the original safetensors: only converted files are fetched', async () => {
    const gpu = await testGpu();
    const out = join(dir, 'conv-q4');
    if (!readdirSync(dir).includes('conv-q4')) await convert('q4', out, 40_000);
    const files = new Map<string, Uint8Array>();
    for (const d of [join(dir, 'ckpt'), out]) for (const f of readdirSync(d)) files.set(f, new Uint8Array(readFileSync(join(d, f))));
    expect([...files.keys()].some((f) => f.endsWith('.safetensors'))).toBe(true);
    hub.repos.set('test/converted', { commit: 'c0nv', files });
    const ref = await Engine.load(gpu, new FolderSource(out), { maxContext: 32 });
    const want = await ref.logits(PROMPT);
    ref.destroy();

    // Plain HTTP: Range reads of the shards.
    hub.hits.length = 0;
    const http = await Engine.load(gpu, new HttpSource(hub.base('test/converted')), { maxContext: 32 });
    expect(http.loadStats!.fromConverted).toBe(true);
    expect((await http.logits(PROMPT)).findIndex((x, i) => x !== want[i])).toBe(-1);
    http.destroy();
    expect(hub.hits.filter((h) => h.file.endsWith('.safetensors') || h.file.endsWith('.index.json'))).toEqual([]);
    expect(hub.hits.some((h) => h.file.startsWith('webdms-') && h.file.endsWith('.bin'))).toBe(true);

    // The store: openModelSource's StoredSource plans from the manifest, checks each shard's SHA-256.
    hub.hits.length = 0;
    const stored = await StoredSource.open(hub.base('test/converted'), { backend: new MemoryBackend(), chunkSize: 16 * 1024, parallel: 2 });
    expect(hub.hits.filter((h) => h.file.endsWith('.safetensors') || h.file.endsWith('.index.json'))).toEqual([]);
    const manifest = JSON.parse(new TextDecoder().decode(files.get(MANIFEST_FILE)!)) as ConvertedManifest;
    for (const s of manifest.shards) expect(await stored.exists(s.file)).toBe(true);
    expect(await stored.exists('model.safetensors.index.json')).toBe(false);
    const fromStore = await Engine.load(gpu, stored, { maxContext: 32 });
    expect((await fromStore.logits(PROMPT)).findIndex((x, i) => x !== want[i])).toBe(-1);
    fromStore.destroy();
  });

  it('an HTML page served for the manifest (a dev server\'s fallback) is no manifest', async () => {
    const gpu = await testGpu();
    const src = new FolderSource(join(dir, 'ckpt'));
    const spa = Object.assign(Object.create(src), {
      exists: async (f: string) => f === MANIFEST_FILE || src.exists(f),
      text: async (f: string) => (f === MANIFEST_FILE ? '<!doctype html><html></html>' : src.text(f)),
    });
    const e = await Engine.load(gpu, spa, { weights: 'q4', maxContext: 16 });
    expect(e.loadStats!.fromConverted).toBe(false);
    e.destroy();
    const broken = Object.assign(Object.create(src), {
      exists: async (f: string) => f === MANIFEST_FILE || src.exists(f),
      text: async (f: string) => (f === MANIFEST_FILE ? '{"format": "something-else"}' : src.text(f)),
    });
    await expect(Engine.load(gpu, broken, { weights: 'q4' })).rejects.toThrow(/"format" is "something-else", not "webdms-converted"/);
  });

  it('a converted model refuses another weight format, and a truncated shard is reported', async () => {
    const gpu = await testGpu();
    const out = join(dir, 'conv-q8');
    if (!readdirSync(dir).includes('conv-q8')) await convert('q8', out, 40_000);
    await expect(Engine.load(gpu, new FolderSource(out), { weights: 'q4' })).rejects.toThrow(/converted to q8; it cannot be loaded as q4/);
    const files = new Map<string, Uint8Array>();
    for (const f of readdirSync(out)) files.set(f, new Uint8Array(readFileSync(join(out, f))));
    const m = JSON.parse(new TextDecoder().decode(files.get(MANIFEST_FILE)!)) as ConvertedManifest;
    files.set(m.shards[1].file, files.get(m.shards[1].file)!.subarray(0, 100));
    hub.repos.set('test/truncated', { commit: 't', files });
    await expect(Engine.load(gpu, new HttpSource(hub.base('test/truncated')), {})).rejects.toThrow(new RegExp(`${m.shards[1].file}.* is 100 bytes, the manifest says ${m.shards[1].bytes}`));
  });
});
