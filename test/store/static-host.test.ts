/**
 * The weight store against a plain static file server (no X-Repo-Commit, as when the app and its default
 * model are hosted together): a changed weight file beside an unchanged config.json is noticed, and a
 * server that ignores Range is read once per file instead of once per chunk.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { StoredSource, type StoreOpenOptions } from '../../worker/store';
import { checkpointVersion } from '../../worker/store/quantized-copy';
import { makeRepo } from './fixture';
import { sha256Of, startHub, type Hub } from './hub-server';
import { MemoryBackend } from './memory-backend';

const CHUNK = 16 * 1024;
let hub: Hub;
let backend: MemoryBackend;
let n = 0;
let repo: string;

beforeAll(async () => {
  hub = await startHub();
});
afterAll(async () => {
  await hub.close();
});
beforeEach(() => {
  hub.resetFaults();
  hub.faults.staticHost = true;
  backend = new MemoryBackend();
  repo = `static/model-${++n}`;
  hub.repos.set(repo, makeRepo({ sharded: false }));
});

const opts = (o: Partial<StoreOpenOptions> = {}): StoreOpenOptions => ({ backend, chunkSize: CHUNK, parallel: 3, retries: 2, retryDelayMs: 5, stallTimeoutMs: 2000, ...o });
const gets = (file?: string) => hub.hits.filter((h) => h.repo === repo && h.method === 'GET' && (!file || h.file === file));
const files = () => hub.repos.get(repo)!.files;

async function contentOf(src: StoredSource | unknown, file: string): Promise<string> {
  const s = src as StoredSource;
  return sha256Of(await s.read(file, 0, await s.size(file)));
}

describe('static hosting: versions without a commit', () => {
  it('a weight file that changed beside an unchanged config.json is downloaded again; an unchanged model costs HEADs only', async () => {
    const first = (await StoredSource.open(hub.base(repo), opts())) as StoredSource;
    expect(await contentOf(first, 'model.safetensors')).toBe(sha256Of(files().get('model.safetensors')!));
    // A new deploy: new weights, the same config.json (and so the same ETag for it).
    const next = makeRepo({ sharded: false, seed: 7 });
    expect(sha256Of(next.files.get('config.json')!)).toBe(sha256Of(files().get('config.json')!));
    files().set('model.safetensors', next.files.get('model.safetensors')!);
    const before = gets().length;
    const second = (await StoredSource.open(hub.base(repo), opts())) as StoredSource;
    expect(second.fromStorage).toBe(false);
    expect(await contentOf(second, 'model.safetensors')).toBe(sha256Of(next.files.get('model.safetensors')!));
    // Only the changed file came again.
    expect(gets().slice(before).every((h) => h.file === 'model.safetensors')).toBe(true);
    const third = gets().length;
    const again = (await StoredSource.open(hub.base(repo), opts())) as StoredSource;
    expect(again.fromStorage).toBe(true);
    expect(gets().length).toBe(third);
  });

  it('a quantized copy\'s version covers the weights too', async () => {
    const v1 = await checkpointVersion(hub.base(repo));
    files().set('model.safetensors', makeRepo({ sharded: false, seed: 9 }).files.get('model.safetensors')!);
    const v2 = await checkpointVersion(hub.base(repo));
    expect(v1?.etag).toBe(v2?.etag);
    expect(v1?.weights).toBeTruthy();
    expect(v2?.weights).not.toBe(v1?.weights);
    // On the Hub the commit covers every file: no extra requests for a digest.
    hub.faults.staticHost = false;
    expect((await checkpointVersion(hub.base(repo)))?.weights).toBeUndefined();
  });
});

describe('a server that ignores Range', () => {
  it('is read once per file, not once per chunk, and the stored bytes are exact', async () => {
    hub.faults.ignoreRange = true;
    hub.repos.set(repo, makeRepo({ sharded: true }));
    const src = (await StoredSource.open(hub.base(repo), opts({ parallel: 1 }))) as StoredSource;
    for (const [name, bytes] of files()) {
      expect(await contentOf(src, name), name).toBe(sha256Of(bytes));
      if (bytes.length > 2 * CHUNK) expect(gets(name).length, name).toBe(1);
    }
  });

  it('a slow but steady body is not a stall, though one chunk takes longer than the stall timeout to arrive', async () => {
    hub.faults.ignoreRange = true;
    // A quarter chunk every 60 ms: a chunk in 240 ms, data never more than 60 ms apart.
    hub.faults.slow = { bytes: CHUNK / 4, everyMs: 60 };
    const src = (await StoredSource.open(hub.base(repo), opts({ parallel: 1, retries: 0, stallTimeoutMs: 150 }))) as StoredSource;
    for (const [name, bytes] of files()) expect(await contentOf(src, name), name).toBe(sha256Of(bytes));
  });

  it('several downloads at once still take each file whole, and a body cut halfway is taken again', async () => {
    hub.faults.ignoreRange = true;
    hub.repos.set(repo, makeRepo({ sharded: true }));
    const shard = 'model-00001-of-00002.safetensors';
    const size = files().get(shard)!.length;
    expect(size).toBeGreaterThan(8 * CHUNK);
    hub.faults.cut.set(shard, { afterBytes: Math.floor(size / 2), times: 1 });
    const src = (await StoredSource.open(hub.base(repo), opts({ parallel: 4 }))) as StoredSource;
    for (const [name, bytes] of files()) expect(await contentOf(src, name), name).toBe(sha256Of(bytes));
    // At most the parallel first requests, plus the retry of the cut body: far fewer than its chunks.
    expect(gets(shard).length).toBeLessThanOrEqual(5);
    expect(Math.ceil(size / CHUNK)).toBeGreaterThan(8);
  });
});
