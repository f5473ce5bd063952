import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { listTensors, readTensorF32 } from '../../worker/load/safetensors';
import { HttpSource, ModelLoadError } from '../../worker/load/source';
import {
  IntegrityError, MemorySource, StorageQuotaError, StorageUnavailableError, StoredSource, deleteAll, deleteModel, listModels, modelBase, openModelSource,
  type StoreOpenOptions, type StoreProgress,
} from '../../worker/store';
import { chunkKey, fileKey, fileRecordKey, modelRecordKey, pendingRecordKey, type ChunkRecord, type Manifest } from '../../worker/store/records';
import { makeRepo } from './fixture';
import { startHub, sha256Of, type Hub } from './hub-server';
import { MemoryBackend } from './memory-backend';

const CHUNK = 16 * 1024;
const SHARD_A = 'model-00001-of-00002.safetensors';
const SHARD_B = 'model-00002-of-00002.safetensors';

let hub: Hub;
let backend: MemoryBackend;
let n = 0;
/** A fresh repo id per test, so tests never share stored state or hit counts. */
let repo: string;

beforeAll(async () => {
  hub = await startHub();
});
afterAll(async () => {
  await hub.close();
});
beforeEach(() => {
  hub.resetFaults();
  backend = new MemoryBackend();
  repo = `org/model-${++n}`;
  hub.repos.set(repo, makeRepo());
});

const opts = (o: Partial<StoreOpenOptions> = {}): StoreOpenOptions => ({
  backend, chunkSize: CHUNK, parallel: 3, retries: 2, retryDelayMs: 5, stallTimeoutMs: 2000, ...o,
});
const hitsFor = (file?: string, method = 'GET') => hub.hits.filter((h) => h.repo === repo && h.method === method && (!file || h.file === file));
const files = () => hub.repos.get(repo)!.files;

async function stored(src: StoredSource | MemorySource): Promise<StoredSource> {
  expect(src).toBeInstanceOf(StoredSource);
  return src as StoredSource;
}

/** Every file of the repo read back through the source equals the server's bytes. */
async function expectSameFiles(src: { read(f: string, o: number, l: number): Promise<Uint8Array>; size(f: string): Promise<number> }) {
  for (const [name, bytes] of files()) {
    expect(await src.size(name), name).toBe(bytes.length);
    expect(sha256Of(await src.read(name, 0, bytes.length)), name).toBe(sha256Of(bytes));
  }
}

async function rejection<T extends Error>(p: Promise<unknown>, cls: new (...a: never[]) => T): Promise<T> {
  const e = await p.then(() => null, (err: unknown) => err);
  expect(e).toBeInstanceOf(cls);
  return e as T;
}

const manifestOf = async (): Promise<Manifest> => (await backend.meta.get<Manifest>(modelRecordKey(hub.base(repo))))!;

describe('StoredSource: first download', () => {
  it('downloads every file the engine reads in Range chunks, a few at a time, and serves exact bytes from storage', async () => {
    const progress: StoreProgress[] = [];
    const src = await stored(await StoredSource.open(hub.base(repo), opts({ onProgress: (p) => progress.push(p) })));
    expect(src.fromStorage).toBe(false);
    await expectSameFiles(src);
    // Each shard in 16 KiB ranges; nothing fetched twice.
    for (const f of [SHARD_A, SHARD_B]) {
      const ranges = hitsFor(f).map((h) => h.range);
      const size = files().get(f)!.length;
      expect(ranges.length).toBe(Math.ceil(size / CHUNK));
      expect(new Set(ranges).size).toBe(ranges.length);
      expect(ranges).toContain(`bytes=${CHUNK}-${2 * CHUNK - 1}`);
    }
    const keys = await backend.chunks.keys();
    const m = await manifestOf();
    expect(m.complete).toBe(true);
    expect(m.absent.sort()).toEqual(['chat_template.jinja', 'chat_template.json', 'dms_metadata.json', 'model.safetensors']);
    expect(keys.length).toBe(m.files.reduce((k, f) => k + Math.ceil(f.size / CHUNK), 0));
    // Integrity: safetensors files were checked against the declared SHA-256, the rest by size and chunk hashes.
    for (const f of m.files) {
      const rec = await backend.meta.get<{ verified: string }>(fileRecordKey(fileKey(m.key, f)));
      expect(rec?.verified, f.name).toBe(f.name.endsWith('.safetensors') ? 'sha256' : 'size');
    }
    // Progress: bytes, files and speed, ending at the total.
    const last = progress.at(-1)!;
    expect(last).toMatchObject({ phase: 'fetch', loadedBytes: m.totalBytes, totalBytes: m.totalBytes, filesDone: m.files.length, filesTotal: m.files.length });
    expect(progress.some((p) => typeof p.bytesPerSecond === 'number' && p.bytesPerSecond > 0)).toBe(true);
    expect(progress.some((p) => p.file === SHARD_A)).toBe(true);
    // Never more than `parallel` Range requests at once is hard to see from outside; at least none of a file is missing.
    expect(await src.exists('tokenizer.json')).toBe(true);
    expect(await src.exists('chat_template.jinja')).toBe(false);
    expect(JSON.parse(await src.text('config.json')).model_type).toBe('qwen3');
  });

  it('keeps at most `parallel` chunk downloads in flight, and uses them', async () => {
    let now = 0;
    let peak = 0;
    const counting = (async (input: RequestInfo | URL, init?: RequestInit) => {
      const chunk = !!new Headers(init?.headers).get('range') && String(input).endsWith('.safetensors');
      if (chunk) peak = Math.max(peak, ++now);
      try {
        const res = await fetch(input, init);
        if (!chunk) return res;
        const body = await res.arrayBuffer(); // the whole body, while counted as in flight
        return new Response(body, { status: res.status, headers: res.headers });
      } finally {
        if (chunk) now--;
      }
    }) as typeof fetch;
    hub.faults.slow = { bytes: 4096, everyMs: 2 };
    const src = await StoredSource.open(hub.base(repo), opts({ parallel: 3, fetchImpl: counting }));
    expect(peak).toBe(3);
    await expectSameFiles(src);
  });

  it('serves the engine: the safetensors index and shards read through the store give the same tensors as HTTP', async () => {
    const src = await stored(await StoredSource.open(hub.base(repo), opts({ cacheChunks: 1 })));
    const http = new HttpSource(hub.base(repo));
    const a = await listTensors(src);
    const b = await listTensors(http);
    expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
    for (const [name, info] of a) {
      expect(Array.from(await readTensorF32(src, info)), name).toEqual(Array.from(await readTensorF32(http, b.get(name)!)));
    }
  });

  it('stores a single-file checkpoint (model.safetensors) too', async () => {
    hub.repos.set(repo, makeRepo({ sharded: false }));
    const src = await stored(await StoredSource.open(hub.base(repo), opts()));
    await expectSameFiles(src);
    expect(await src.exists('model.safetensors.index.json')).toBe(false);
    expect(hitsFor('model.safetensors.index.json', 'HEAD')).toHaveLength(0);
  });

  it('reads ranges that cross chunk boundaries, and refuses reads past the end', async () => {
    const src = await stored(await StoredSource.open(hub.base(repo), opts()));
    const a = files().get(SHARD_A)!;
    for (const [off, len] of [[0, 1], [CHUNK - 3, 7], [CHUNK - 1, 2 * CHUNK + 5], [a.length - 10, 10], [a.length, 0]]) {
      expect(sha256Of(await src.read(SHARD_A, off, len)), `${off}+${len}`).toBe(sha256Of(a.subarray(off, off + len)));
    }
    await rejection(src.read(SHARD_A, a.length - 2, 3), ModelLoadError);
    await rejection(src.read('nope.bin', 0, 1), ModelLoadError);
  });
});

describe('StoredSource: interrupted downloads', () => {
  it('retries a chunk whose connection is cut mid-body, and ends complete and correct', async () => {
    hub.faults.cut.set(SHARD_A, { afterBytes: 5000, times: 2 });
    const src = await stored(await StoredSource.open(hub.base(repo), opts()));
    await expectSameFiles(src);
    expect(hitsFor(SHARD_A).length).toBe(Math.ceil(files().get(SHARD_A)!.length / CHUNK) + 2);
  });

  it('resumes where it stopped: a file is marked complete only after all its chunks, and only missing chunks are fetched again', async () => {
    // Every request for shard B dies after 1000 bytes: the first open fails after its retries.
    hub.faults.cut.set(SHARD_B, { afterBytes: 1000, times: Infinity });
    const e = await rejection(StoredSource.open(hub.base(repo), opts({ retries: 1 })), ModelLoadError);
    expect(e.message).toMatch(/connection (was cut|was lost)/);
    expect(e.message).toContain(SHARD_B);
    const base = hub.base(repo);
    const pending = (await backend.meta.get<Manifest>(pendingRecordKey(base)))!;
    expect(pending.complete).toBe(false);
    expect(await backend.meta.get(modelRecordKey(base))).toBeUndefined();
    const b = pending.files.find((f) => f.name === SHARD_B)!;
    const a = pending.files.find((f) => f.name === SHARD_A)!;
    expect(await backend.meta.get(fileRecordKey(fileKey(base, b)))).toBeUndefined();
    expect(await backend.meta.get(fileRecordKey(fileKey(base, a)))).toBeDefined();
    const lib = await listModels({ backend });
    expect(lib).toHaveLength(1);
    expect(lib[0]).toMatchObject({ id: base, complete: false });
    expect(lib[0].storedBytes).toBeLessThan(lib[0].bytes);

    // The network is back: only what is missing is downloaded.
    hub.resetFaults();
    const before = hub.hits.length;
    const src = await stored(await StoredSource.open(base, opts()));
    const again = hub.hits.slice(before).filter((h) => h.method === 'GET' && h.repo === repo);
    expect(again.every((h) => h.file === SHARD_B)).toBe(true);
    expect(again.length).toBe(Math.ceil(files().get(SHARD_B)!.length / CHUNK));
    await expectSameFiles(src);
    expect((await listModels({ backend }))[0]).toMatchObject({ complete: true });
    expect(await backend.meta.get(pendingRecordKey(base))).toBeUndefined();
  });

  it('resumes a file half stored: chunks already there are not fetched again', async () => {
    const size = files().get(SHARD_A)!.length;
    const chunks = Math.ceil(size / CHUNK);
    // Shard A's chunk 3 fails for good; the others (parallel 1, in order) are stored.
    hub.faults.cut.set(SHARD_A, { afterBytes: 10, times: Infinity });
    let calls = 0;
    const stallAt3 = (async (input: RequestInfo | URL, init?: RequestInit) => {
      const range = new Headers(init?.headers).get('range');
      if (String(input).endsWith(SHARD_A) && range?.startsWith(`bytes=${3 * CHUNK}-`)) {
        calls++;
        throw new TypeError('network down');
      }
      if (String(input).endsWith(SHARD_A)) hub.faults.cut.delete(SHARD_A);
      return fetch(input, init);
    }) as typeof fetch;
    await rejection(StoredSource.open(hub.base(repo), opts({ parallel: 1, retries: 0, fetchImpl: stallAt3 })), ModelLoadError);
    expect(calls).toBe(1);
    const before = hub.hits.length;
    await StoredSource.open(hub.base(repo), opts());
    const again = hub.hits.slice(before).filter((h) => h.method === 'GET' && h.file === SHARD_A);
    // Chunks 0..2 were kept; 3.. come now.
    expect(again.map((h) => h.range)).not.toContain(`bytes=0-${CHUNK - 1}`);
    expect(again.length).toBe(chunks - 3);
  });

  it('says "offline" with what is stored when the server cannot be reached before the download finished', async () => {
    hub.faults.cut.set(SHARD_B, { afterBytes: 0, times: Infinity });
    await rejection(StoredSource.open(hub.base(repo), opts({ retries: 0 })), ModelLoadError);
    const down = (async () => {
      throw new TypeError('fetch failed');
    }) as typeof fetch;
    const e = await rejection(StoredSource.open(hub.base(repo), opts({ fetchImpl: down })), ModelLoadError);
    expect(e.message).toMatch(/Network error/);
    expect(e.message).toMatch(/are stored; the download resumes where it stopped/);
  });
});

describe('StoredSource: integrity', () => {
  it('a wrong declared SHA-256: detected, the file deleted after a second try, nothing marked complete', async () => {
    hub.faults.declaredSha.set(SHARD_A, 'ab'.repeat(32));
    const e = await rejection(StoredSource.open(hub.base(repo), opts()), IntegrityError);
    expect(e.message).toContain(SHARD_A);
    expect(e.message).toMatch(/failed its integrity check twice/);
    const base = hub.base(repo);
    expect((await backend.chunks.keys()).filter((k) => k.includes(SHARD_A))).toEqual([]);
    expect((await backend.meta.keys()).filter((k) => k.includes(SHARD_A))).toEqual([]);
    expect(await backend.meta.get(modelRecordKey(base))).toBeUndefined();
    // The plan holding the bad hash is marked stale, so it is not resumed as is; the library still shows it.
    expect((await backend.meta.get<Manifest>(pendingRecordKey(base)))?.stale).toBe(true);
    expect(await listModels({ backend })).toMatchObject([{ id: base, complete: false }]);
    // Downloaded twice.
    expect(hitsFor(SHARD_A).length).toBe(2 * Math.ceil(files().get(SHARD_A)!.length / CHUNK));
    // Once the server is right, the next open succeeds (the other files' chunks are reused).
    hub.resetFaults();
    const before = hub.hits.length;
    await expectSameFiles(await stored(await StoredSource.open(base, opts())));
    expect(new Set(hub.hits.slice(before).filter((h) => h.method === 'GET').map((h) => h.file))).toEqual(new Set([SHARD_A]));
  });

  it("the Hub's tree API supplies the SHA-256 when the headers cannot (a browser behind the LFS redirect)", async () => {
    hub.faults.noShaHeaders = true;
    const verifiedBy = async () => {
      const m = await manifestOf();
      const out: Record<string, string | undefined> = {};
      for (const f of m.files) out[f.name] = (await backend.meta.get<{ verified: string }>(fileRecordKey(fileKey(m.key, f))))?.verified;
      return out;
    };
    await StoredSource.open(hub.base(repo), opts({ hubApi: false }));
    expect((await verifiedBy())[SHARD_A]).toBe('size');
    expect(hitsFor('(api tree)')).toHaveLength(0);

    backend = new MemoryBackend();
    await StoredSource.open(hub.base(repo), opts({ hubApi: true }));
    expect((await verifiedBy())[SHARD_A]).toBe('sha256');
    expect((await verifiedBy())['config.json']).toBe('size');
    expect(hitsFor('(api tree)')).toHaveLength(1);

    // A wrong hash in the listing is caught like a wrong header.
    backend = new MemoryBackend();
    hub.faults.declaredSha.set(SHARD_B, 'cd'.repeat(32));
    const e = await rejection(StoredSource.open(hub.base(repo), opts({ hubApi: true })), IntegrityError);
    expect(e.message).toContain(SHARD_B);

    // No listing (blocked, offline API): headers and chunk hashes still apply.
    backend = new MemoryBackend();
    hub.faults.declaredSha.clear();
    const noApi = ((input: RequestInfo | URL, init?: RequestInit) =>
      String(input).includes('/api/') ? Promise.reject(new TypeError('blocked')) : fetch(input, init)) as typeof fetch;
    await expectSameFiles(await stored(await StoredSource.open(hub.base(repo), opts({ hubApi: true, fetchImpl: noApi }))));
  });

  it('a chunk corrupted in storage is detected on read, deleted and fetched again; the bad bytes are never returned', async () => {
    const base = hub.base(repo);
    await StoredSource.open(base, opts());
    const m = await manifestOf();
    const a = m.files.find((f) => f.name === SHARD_A)!;
    const ck = chunkKey(fileKey(base, a), 1);
    const rec = (await backend.chunks.get<ChunkRecord>(ck))!;
    new Uint8Array(rec.data)[100] ^= 0xff;
    await backend.chunks.set(ck, rec);

    const before = hub.hits.length;
    const src = await stored(await StoredSource.open(base, opts()));
    expect(sha256Of(await src.read(SHARD_A, 0, files().get(SHARD_A)!.length))).toBe(sha256Of(files().get(SHARD_A)!));
    const gets = hub.hits.slice(before).filter((h) => h.method === 'GET');
    expect(gets.map((h) => `${h.file} ${h.range}`)).toEqual([`${SHARD_A} bytes=${CHUNK}-${2 * CHUNK - 1}`]);
    // Repaired in storage.
    expect(new Uint8Array((await backend.chunks.get<ChunkRecord>(ck))!.data)[100]).toBe(files().get(SHARD_A)![CHUNK + 100]);
  });

  it('concurrent reads while one chunk is repaired all get exact bytes, and the file is marked complete again', async () => {
    const base = hub.base(repo);
    await StoredSource.open(base, opts());
    const a = (await manifestOf()).files.find((f) => f.name === SHARD_A)!;
    const ck = chunkKey(fileKey(base, a), 2);
    const rec = (await backend.chunks.get<ChunkRecord>(ck))!;
    new Uint8Array(rec.data)[7] ^= 1;
    await backend.chunks.set(ck, rec);
    const src = await stored(await StoredSource.open(base, opts({ cacheChunks: 1 })));
    const bytes = files().get(SHARD_A)!;
    const ranges: [number, number][] = [[0, 3 * CHUNK], [2 * CHUNK + 5, 100], [CHUNK, 4 * CHUNK], [bytes.length - 50, 50]];
    const got = await Promise.all(ranges.map(([o, l]) => src.read(SHARD_A, o, l)));
    ranges.forEach(([o, l], k) => expect(sha256Of(got[k]), `${o}+${l}`).toBe(sha256Of(bytes.subarray(o, o + l))));
    expect(await backend.meta.get(fileRecordKey(fileKey(base, a)))).toMatchObject({ verified: 'sha256' });
  });

  it('a model deleted (e.g. in another tab) while being read: missing chunks come from the network again', async () => {
    const base = hub.base(repo);
    const src = await stored(await StoredSource.open(base, opts()));
    await deleteModel(base, { backend });
    await expectSameFiles(src);
    // Nothing is written back for a deleted model.
    expect(await backend.chunks.keys()).toEqual([]);
    expect(await backend.meta.keys()).toEqual([]);
  });

  it('a truncated chunk found at open is fetched again before the model is served', async () => {
    const base = hub.base(repo);
    await StoredSource.open(base, opts());
    const a = (await manifestOf()).files.find((f) => f.name === SHARD_B)!;
    const ck = chunkKey(fileKey(base, a), 0);
    await backend.chunks.del(ck); // a lost chunk
    const before = hub.hits.length;
    const src = await stored(await StoredSource.open(base, opts()));
    expect(hub.hits.slice(before).filter((h) => h.method === 'GET').map((h) => h.file)).toEqual([SHARD_B]);
    await expectSameFiles(src);
  });

  it('offline with a corrupt chunk: the read fails with a clear message instead of returning bad bytes', async () => {
    const base = hub.base(repo);
    await StoredSource.open(base, opts());
    const a = (await manifestOf()).files.find((f) => f.name === SHARD_A)!;
    const ck = chunkKey(fileKey(base, a), 0);
    const rec = (await backend.chunks.get<ChunkRecord>(ck))!;
    rec.data = rec.data.slice(0, 100); // truncated
    await backend.chunks.set(ck, rec);
    const down = (async () => {
      throw new TypeError('fetch failed');
    }) as typeof fetch;
    const src = await stored(await StoredSource.open(base, opts({ fetchImpl: down })));
    expect(src.warning).toMatch(/could not check for updates/);
    const e = await rejection(src.read(SHARD_A, 0, 10), ModelLoadError);
    expect(e.message).toMatch(/chunk 0 of model-00001-of-00002.safetensors is truncated/);
    expect(e.message).toMatch(/Reload when online/);
    // The damaged chunk and the file's complete mark are gone, so the next online open repairs it.
    expect(await backend.chunks.get(ck)).toBeUndefined();
    expect(await backend.meta.get(fileRecordKey(fileKey(base, a)))).toBeUndefined();
    const fixed = await stored(await StoredSource.open(base, opts()));
    await expectSameFiles(fixed);
  });
});

describe('StoredSource: reloads, offline, versions', () => {
  it('a second open reads from storage: one HEAD of config.json, no downloads', async () => {
    await StoredSource.open(hub.base(repo), opts());
    const before = hub.hits.length;
    const progress: StoreProgress[] = [];
    const src = await stored(await StoredSource.open(hub.base(repo), opts({ onProgress: (p) => progress.push(p) })));
    expect(hub.hits.slice(before).map((h) => `${h.method} ${h.file}`)).toEqual(['HEAD config.json']);
    expect(src.fromStorage).toBe(true);
    expect(progress.at(-1)).toMatchObject({ fromStorage: true, loadedBytes: progress.at(-1)!.totalBytes });
    await expectSameFiles(src);
    expect(hub.hits.length).toBe(before + 1);
  });

  it('offline: the stored model is served, with a warning that updates could not be checked', async () => {
    await StoredSource.open(hub.base(repo), opts());
    const down = (async () => {
      throw new TypeError('fetch failed');
    }) as typeof fetch;
    const src = await stored(await StoredSource.open(hub.base(repo), opts({ fetchImpl: down })));
    expect(src.warning).toMatch(/could not check for updates.*Network error/);
    await expectSameFiles(src);
  });

  it('a server that does not answer the version check: the stored copy is served after revalidateTimeoutMs', async () => {
    await StoredSource.open(hub.base(repo), opts());
    const hang = ((_: RequestInfo | URL, init?: RequestInit) =>
      new Promise<Response>((_r, reject) => init?.signal?.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError'))))) as typeof fetch;
    const t0 = Date.now();
    const src = await stored(await StoredSource.open(hub.base(repo), opts({ fetchImpl: hang, revalidateTimeoutMs: 200 })));
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(src.warning).toMatch(/could not check for updates.*no response after 200 ms/);
    await expectSameFiles(src);
  });

  it('revalidate: false touches no network at all', async () => {
    await StoredSource.open(hub.base(repo), opts());
    const before = hub.hits.length;
    await StoredSource.open(hub.base(repo), opts({ revalidate: false }));
    expect(hub.hits.length).toBe(before);
  });

  it('an update (new commit, changed config and one shard) downloads only what changed and never mixes versions', async () => {
    const base = hub.base(repo);
    await StoredSource.open(base, opts());
    const old = await manifestOf();
    const next = makeRepo({ commit: 'c0ffee0000000000000000000000000000000002', configNote: 'v2' });
    const oldB = files().get(SHARD_B)!;
    next.files.set(SHARD_B, oldB); // shard B unchanged
    const changedA = makeRepo({ seed: 99 }).files.get(SHARD_A)!;
    next.files.set(SHARD_A, changedA);
    hub.repos.set(repo, next);
    const before = hub.hits.length;
    const src = await stored(await StoredSource.open(base, opts()));
    const gets = hub.hits.slice(before).filter((h) => h.method === 'GET').map((h) => h.file);
    expect(new Set(gets)).toEqual(new Set(['config.json', SHARD_A]));
    await expectSameFiles(src);
    const m = await manifestOf();
    expect(m.commit).toBe('c0ffee0000000000000000000000000000000002');
    expect(m.version).not.toBe(old.version);
    // The old shard A and old config are deleted; unchanged files are shared.
    const oldA = old.files.find((f) => f.name === SHARD_A)!;
    expect(await backend.chunks.keys(`${fileKey(base, oldA)}#`)).toEqual([]);
    expect(await backend.meta.get(fileRecordKey(fileKey(base, oldA)))).toBeUndefined();
    const live = new Set(m.files.map((f) => fileKey(base, f)));
    for (const k of await backend.chunks.keys()) expect(live.has(k.slice(0, k.lastIndexOf('#')))).toBe(true);
  });

  it('a new commit that changes no file (e.g. a README edit) downloads nothing', async () => {
    await StoredSource.open(hub.base(repo), opts());
    hub.repos.get(repo)!.commit = 'c0ffee00000000000000000000000000000000ff';
    const before = hub.hits.length;
    await StoredSource.open(hub.base(repo), opts());
    expect(hub.hits.slice(before).filter((h) => h.method === 'GET')).toEqual([]);
    expect((await manifestOf()).commit).toBe('c0ffee00000000000000000000000000000000ff');
  });

  it('an update that cannot be downloaded keeps serving the stored version, with a warning', async () => {
    await StoredSource.open(hub.base(repo), opts());
    const next = makeRepo({ commit: 'c0ffee0000000000000000000000000000000003', seed: 5 });
    hub.repos.set(repo, next);
    hub.faults.cut.set(SHARD_A, { afterBytes: 0, times: Infinity });
    const src = await stored(await StoredSource.open(hub.base(repo), opts({ retries: 0 })));
    expect(src.warning).toMatch(/the update could not be downloaded/);
    expect((await manifestOf()).commit).toBe('c0ffee0000000000000000000000000000000001');
    // Still the old bytes, whole and consistent.
    const oldA = makeRepo().files.get(SHARD_A)!;
    expect(sha256Of(await src.read(SHARD_A, 0, oldA.length))).toBe(sha256Of(oldA));
  });
});

describe('StoredSource: errors', () => {
  it('404: no model at the address, nothing stored', async () => {
    const e = await rejection(StoredSource.open(hub.base('org/none-such'), opts()), ModelLoadError);
    expect(e.status).toBe(401);
    expect(e.message).toMatch(/access denied/);
    hub.repos.get(repo)!.files.delete('config.json');
    const e2 = await rejection(StoredSource.open(hub.base(repo), opts()), ModelLoadError);
    expect(e2.status).toBe(404);
    expect(e2.message).toMatch(/config\.json was not found/);
    expect(await backend.meta.keys()).toEqual([]);
    expect(await backend.chunks.keys()).toEqual([]);
  });

  it("an app's HTML fallback page (200 text/html for any path) is not taken for model files", async () => {
    const spa = (async () => new Response('<!doctype html><title>app</title>', { status: 200, headers: { 'Content-Type': 'text/html' } })) as typeof fetch;
    const e = await rejection(StoredSource.open('http://127.0.0.1:9/models/webdms-default/', opts({ fetchImpl: spa })), ModelLoadError);
    expect(e.status).toBe(404);
    expect(e.message).toMatch(/config\.json was not found at http:\/\/127\.0\.0\.1:9\/models\/webdms-default\/config\.json \(HTTP 404, or an HTML page/);
    expect(await backend.meta.keys()).toEqual([]);
  });

  it('a shard listed in the index but missing: a 404 naming the shard, nothing marked complete', async () => {
    hub.repos.get(repo)!.files.delete(SHARD_B);
    const e = await rejection(StoredSource.open(hub.base(repo), opts()), ModelLoadError);
    expect(e.status).toBe(404);
    expect(e.message).toContain(SHARD_B);
    expect(await listModels({ backend })).toEqual([]);
  });

  it('a server error (500) on a chunk is retried, then reported with its status', async () => {
    hub.faults.status.set(SHARD_A, 500);
    const e = await rejection(StoredSource.open(hub.base(repo), opts({ retries: 1 })), ModelLoadError);
    expect(e.status).toBe(500);
    expect(e.message).toMatch(/HTTP 500 server error/);
  });

  it('a stalled response is abandoned after stallTimeoutMs and retried', async () => {
    hub.faults.slow = { bytes: 1, everyMs: 1000 };
    const t0 = Date.now();
    const e = await rejection(StoredSource.open(hub.base(repo), opts({ stallTimeoutMs: 150, retries: 1 })), ModelLoadError);
    expect(e.message).toMatch(/stalled|no response/);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });
});

describe('StoredSource: quota', () => {
  it('a model larger than the free space: StorageQuotaError with the numbers, nothing downloaded', async () => {
    backend.quota = 20_000;
    const e = await rejection(StoredSource.open(hub.base(repo), opts()), StorageQuotaError);
    expect(e.quotaBytes).toBe(20_000);
    expect(e.requiredBytes).toBeGreaterThan(20_000);
    expect(e.modelBytes).toBe([...files().values()].reduce((k, b) => k + b.length, 0));
    expect(e.message).toMatch(/Not enough storage for this model: it needs .* more, but only .* is free/);
    expect(e.message).toMatch(/run it from memory/);
    expect(hitsFor(SHARD_A)).toHaveLength(0);
    expect(await backend.chunks.keys()).toEqual([]);
  });

  it('lists other stored models that could be deleted', async () => {
    const other = repo;
    await StoredSource.open(hub.base(other), opts());
    repo = `org/model-${++n}`;
    hub.repos.set(repo, makeRepo({ seed: 3 }));
    backend.quota = backend.usage() + 50_000;
    const e = await rejection(StoredSource.open(hub.base(repo), opts()), StorageQuotaError);
    expect(e.otherModels.map((m) => m.id)).toEqual([hub.base(other)]);
    expect(e.message).toMatch(/delete stored models to free up to/);
  });

  it('memoryFallback: runs from the network without storing', async () => {
    backend.quota = 20_000;
    const src = await StoredSource.open(hub.base(repo), opts({ memoryFallback: true }));
    expect(src).toBeInstanceOf(MemorySource);
    expect((src as MemorySource).reason).toBeInstanceOf(StorageQuotaError);
    expect(src.stored).toBe(false);
    await expectSameFiles(src);
    expect(await backend.chunks.keys()).toEqual([]);
  });

  it('a write refused by the browser (QuotaExceededError) becomes StorageQuotaError', async () => {
    let writes = 0;
    backend.chunks.beforeSet = () => {
      if (++writes > 5) throw new DOMException('quota', 'QuotaExceededError');
    };
    const e = await rejection(StoredSource.open(hub.base(repo), opts({ parallel: 1 })), StorageQuotaError);
    expect(e.message).toMatch(/refused to store more data/);
    const total = [...files().values()].reduce((k, b) => k + b.length, 0);
    expect(e.modelBytes).toBe(total);
    expect(e.requiredBytes).toBe(total - (await listModels({ backend }))[0].storedBytes);
    expect(Number.isNaN(e.availableBytes)).toBe(true);
    // Choosing "run from memory" gives the partial download's space back.
    const src = await StoredSource.open(hub.base(repo), opts({ memoryFallback: true }));
    expect(src).toBeInstanceOf(MemorySource);
    await expectSameFiles(src);
    expect(await backend.chunks.keys()).toEqual([]);
    expect(await listModels({ backend })).toEqual([]);
  });

  it('a record write refused by the browser (a raw QuotaExceededError, no message): memoryFallback still runs from memory', async () => {
    backend.meta.beforeSet = (key) => {
      if (key !== 'probe') throw new DOMException('', 'QuotaExceededError');
    };
    await expect(StoredSource.open(hub.base(repo), opts())).rejects.toMatchObject({ name: 'QuotaExceededError' });
    const src = await StoredSource.open(hub.base(repo), opts({ memoryFallback: true }));
    expect(src).toBeInstanceOf(MemorySource);
    expect((src as MemorySource).reason.message).toMatch(/refused to store more data/);
    await expectSameFiles(src);
  });

  it('asks for persistent storage before downloading, where the API exists', async () => {
    const src = await stored(await StoredSource.open(hub.base(repo), opts()));
    expect(backend.persistCalls).toBe(1);
    expect(src.persisted).toBe(true);
    const b2 = new MemoryBackend();
    b2.canPersist = false; // a worker: no persist()
    const src2 = await stored(await StoredSource.open(hub.base(repo), opts({ backend: b2 })));
    expect(src2.persisted).toBe(false);
    const b3 = new MemoryBackend();
    await StoredSource.open(hub.base(repo), opts({ backend: b3, persist: false }));
    expect(b3.persistCalls).toBe(0);
  });
});

describe('StoredSource: no IndexedDB', () => {
  it('StorageUnavailableError when the database cannot be opened; memoryFallback runs from the network', async () => {
    const broken = new MemoryBackend();
    broken.meta.get = async () => {
      throw new DOMException('The user denied permission to access the database.', 'InvalidStateError');
    };
    const e = await rejection(StoredSource.open(hub.base(repo), opts({ backend: broken })), StorageUnavailableError);
    expect(e.message).toMatch(/does not let the site store the model .*denied permission.*run it from memory/);
    const src = await StoredSource.open(hub.base(repo), opts({ backend: broken, memoryFallback: true }));
    expect(src).toBeInstanceOf(MemorySource);
    await expectSameFiles(src);
  });
});

describe('model library', () => {
  it('lists stored models with sizes and last use, deletes one, deletes all', async () => {
    const first = repo;
    await StoredSource.open(hub.base(first), opts({ spec: first }));
    repo = `org/model-${++n}`;
    hub.repos.set(repo, makeRepo({ seed: 7 }));
    await new Promise((r) => setTimeout(r, 5));
    await StoredSource.open(hub.base(repo), opts({ spec: repo }));
    let lib = await listModels({ backend });
    expect(lib.map((m) => m.name)).toEqual([repo, first]); // most recent first
    for (const m of lib) {
      expect(m.complete).toBe(true);
      expect(m.storedBytes).toBe(m.bytes);
      expect(m.revision).toBe('main');
      expect(m.commit).toBe('c0ffee0000000000000000000000000000000001');
      expect(m.lastUsed).toBeGreaterThan(0);
    }
    await deleteModel(hub.base(first), { backend });
    lib = await listModels({ backend });
    expect(lib.map((m) => m.name)).toEqual([repo]);
    expect((await backend.chunks.keys()).every((k) => k.startsWith(hub.base(repo)))).toBe(true);
    expect((await backend.meta.keys()).every((k) => k.includes(hub.base(repo)))).toBe(true);
    await deleteAll({ backend });
    expect(await listModels({ backend })).toEqual([]);
    expect(await backend.chunks.keys()).toEqual([]);
  });
});

describe('openModelSource', () => {
  it('maps specs to base URLs', () => {
    expect(modelBase('default', 'http://127.0.0.1:5173/')).toBe('http://127.0.0.1:5173/models/webdms-default/');
    expect(modelBase('', 'https://x.org/app/')).toBe('https://x.org/app/models/webdms-default/');
    expect(modelBase('org/name')).toBe('https://huggingface.co/org/name/resolve/main/');
    expect(modelBase('org/name@abc')).toBe('https://huggingface.co/org/name/resolve/abc/');
    expect(modelBase('http://h/m')).toBe('http://h/m/');
    expect(modelBase('/models/x', 'http://h:1/')).toBe('http://h:1/models/x/');
  });

  it('opens a stored source for a URL spec', async () => {
    const src = await openModelSource(hub.base(repo), opts());
    expect(src.stored).toBe(true);
    await expectSameFiles(src);
    expect((await listModels({ backend }))[0].name).toBe(hub.base(repo));
  });
});

describe('StoredSource: hostile indexes', () => {
  it('an index naming a shard on another host, by scheme, absolute path or .., is refused before any of it is fetched', async () => {
    for (const shard of [`//127.0.0.1:${new URL(hub.url).port}/org/other/resolve/main/x.safetensors`, 'https://127.0.0.1:1/x.safetensors', '/etc/passwd', '../../other/resolve/main/x.safetensors']) {
      const index = JSON.stringify({ weight_map: { 'model.embed_tokens.weight': 'model-00001-of-00002.safetensors', 'model.norm.weight': shard } });
      files().set('model.safetensors.index.json', new TextEncoder().encode(index));
      const before = hub.hits.length;
      await expect(StoredSource.open(hub.base(repo), opts()), shard).rejects.toThrow(/refused/);
      expect(hub.hits.slice(before).filter((h) => h.repo !== repo || h.file.includes('x.safetensors') || h.file.includes('passwd'))).toEqual([]);
      expect(await listModels({ backend }).then((l) => l.filter((m) => m.complete))).toEqual([]);
    }
  });
});
