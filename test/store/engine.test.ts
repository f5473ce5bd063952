/**
 * The engine runs from the weight store: a golden checkpoint served by the local Hub imitation is
 * stored in (small) chunks, loaded by Engine.load through StoredSource, and must reproduce
 * transformers' greedy tokens; then again with the network gone, from storage alone.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../worker/engine/engine';
import { ModelTokenizer } from '../../worker/model/tokenizer';
import { StoredSource } from '../../worker/store';
import { testGpu } from '../gpu';
import { startHub, type Hub } from './hub-server';
import { MemoryBackend } from './memory-backend';

const dir = (name: string) => new URL(`../fixtures/golden/${name}/`, import.meta.url).pathname;

let hub: Hub;
beforeAll(async () => {
  hub = await startHub();
  for (const name of ['llama', 'qwen3']) {
    const files = new Map<string, Uint8Array>();
    for (const f of readdirSync(dir(name))) if (f !== 'golden.json') files.set(f, new Uint8Array(readFileSync(dir(name) + f)));
    hub.repos.set(`golden/${name}`, { commit: `c0ffee-${name}`, files });
  }
});
afterAll(async () => {
  await hub.close();
});

describe.each(['llama', 'qwen3'])('Engine.load through the store: %s', (name) => {
  it('reproduces the golden greedy tokens from storage, online and then offline', async () => {
    const g = JSON.parse(readFileSync(`${dir(name)}golden.json`, 'utf8')) as { prompt_ids: number[]; greedy_ids: number[]; prompt_messages: { role: string; content: string }[] };
    const backend = new MemoryBackend();
    const opts = { backend, chunkSize: 64 * 1024, parallel: 3 };
    const gpu = await testGpu();
    const first = await StoredSource.open(hub.base(`golden/${name}`), opts);
    expect(first).toBeInstanceOf(StoredSource);
    let engine = await Engine.load(gpu, first, { weights: 'f32' });
    let r = await engine.generate(g.prompt_ids, { maxTokens: g.greedy_ids.length, temperature: 0, stopIds: [] });
    expect(r.ids).toEqual(g.greedy_ids);
    engine.destroy();

    const offline = (async () => {
      throw new TypeError('fetch failed');
    }) as typeof fetch;
    const hits = hub.hits.length;
    const again = await StoredSource.open(hub.base(`golden/${name}`), { ...opts, fetchImpl: offline });
    expect((again as StoredSource).fromStorage).toBe(true);
    engine = await Engine.load(gpu, again, { weights: 'f32' });
    r = await engine.generate(g.prompt_ids, { maxTokens: g.greedy_ids.length, temperature: 0, stopIds: [] });
    expect(r.ids).toEqual(g.greedy_ids);
    // The tokenizer and chat template came from storage too.
    const tok = await ModelTokenizer.load(again);
    expect(tok.vocabSize).toBeGreaterThan(0);
    expect(engine.tokenizer).not.toBeNull();
    engine.destroy();
    expect(hub.hits.length).toBe(hits);
  });
});
