/**
 * A model whose weights make the logits NaN part-way through a reply: the page must stop with the
 * engine's "non-finite logits at token N" error on the reply, and keep the text generated before it,
 * instead of streaming garbage ("!!!!") as if it were text. The poisoned copy of the golden qwen3-dms fixture
 * is served by the local Hub-like server (test/store/hub-server.ts) on 127.0.0.1.
 */
import { test, expect } from '@playwright/test';
import { readFileSync } from 'node:fs';
import { listTensors, readTensorF32 } from '../worker/load/safetensors';
import { FolderSource } from '../worker/load/source-node';
import { ModelTokenizer } from '../worker/model/tokenizer';
import { writeSafetensors } from '../test/load/helpers';
import { startHub, type Hub } from '../test/store/hub-server';
import { openWithModel } from './helpers';

// qwen3-dms: its lm_head is not tied to the embeddings, so poisoned embedding rows leave the logits finite.
const DIR = new URL('../test/fixtures/golden/qwen3-dms/', import.meta.url).pathname;
let hub: Hub;

test.beforeAll(async () => {
  const json = (f: string) => JSON.parse(readFileSync(DIR + f, 'utf8'));
  const tok = ModelTokenizer.fromJson(json('tokenizer.json'), json('tokenizer_config.json'));
  // The prompt the page sends for "Hello": its tokens keep their embeddings, every other row is NaN, so
  // the first reply token is sampled from finite logits and the first new token fed back poisons them.
  const prompt = new Set(tok.encode(tok.applyChatTemplate([{ role: 'user', content: 'Hello' }], { addGenerationPrompt: true }), false));
  const hidden = json('config.json').hidden_size as number;
  const src = new FolderSource(DIR);
  const tensors = [];
  for (const [name, info] of await listTensors(src)) {
    const t = Float32Array.from(await readTensorF32(src, info));
    if (name === 'model.embed_tokens.weight') {
      for (let id = 0; id < t.length / hidden; id++) if (!prompt.has(id)) t.fill(NaN, id * hidden, (id + 1) * hidden);
    }
    tensors.push({ name, dtype: 'F32', shape: info.shape, data: t });
  }
  const files = new Map<string, Uint8Array>(['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json'].map((f) => [f, new Uint8Array(readFileSync(DIR + f))]));
  files.set('model.safetensors', writeSafetensors(tensors));
  hub = await startHub({ 'test/nan': { commit: 'a'.repeat(40), files } });
});
test.afterAll(async () => hub?.close());

test('non-finite logits stop the reply with an error naming the token, and the text before it is kept', async ({ page }) => {
  await openWithModel(page, `/?${new URLSearchParams({ model: hub.base('test/nan'), temperature: '0', maxTokens: '12', weights: 'f32' })}`);
  await expect(page.locator('#status-dot')).toHaveAttribute('data-state', 'ready', { timeout: 150_000 });
  const input = page.getByRole('textbox', { name: 'Message' });
  await input.fill('Hello');
  await input.press('Enter');
  const reply = page.getByRole('log').locator('article.msg-assistant').first();
  const error = reply.locator('.msg-error');
  await expect(error).toContainText(/the model produced non-finite logits at token \d+/, { timeout: 120_000 });
  const n = Number(/at token (\d+)/.exec((await error.textContent()) ?? '')?.[1]);
  expect(n).toBeGreaterThan(1);
  // The tokens before it were real text, and stay.
  await expect(reply.locator('.content')).not.toBeEmpty();
  await expect(page.locator('#status-dot')).toHaveAttribute('data-state', 'ready');
});
