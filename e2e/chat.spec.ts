/**
 * The chat page end to end on Chromium's SwiftShader WebGPU: the golden qwen3 fixture (a 3-layer,
 * random-weight model served by Vite from the repo) loaded in the Web Worker, streamed replies, Stop,
 * a follow-up turn that continues the KV cache, the one-tab lock, and the error paths.
 * Replies are kept short: SwiftShader is slow.
 */
import { test, expect, type Page } from '@playwright/test';
import { agreeToModel, openWithModel } from './helpers';

const FIXTURE = '/test/fixtures/golden/qwen3/';
const page_url = (q: Record<string, string | number>) => {
  const p = new URLSearchParams({ model: FIXTURE, temperature: '0' });
  for (const [k, v] of Object.entries(q)) p.set(k, String(v));
  return `/?${p}`;
};

async function waitReady(page: Page): Promise<void> {
  await expect(page.locator('#status-dot')).toHaveAttribute('data-state', 'ready', { timeout: 150_000 });
}

const assistantReplies = (page: Page) => page.getByRole('log').locator('article.msg-assistant');

test('loads a fixture model in the Web Worker and streams generated text', async ({ page }) => {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await openWithModel(page, page_url({ maxTokens: 12 }));
  await waitReady(page);
  // The model runs in a module worker, not on the page.
  expect(page.workers().some((w) => w.url().includes('worker'))).toBe(true);
  const info = await page.evaluate(() => (window as unknown as { __webdms: { state: { modelInfo: { architecture: string; numLayers: number } } } }).__webdms.state.modelInfo);
  expect(info.architecture).toBe('qwen3');
  expect(info.numLayers).toBe(3);
  await expect(page.locator('#model-name')).not.toHaveText('No model');

  // Record every text the reply bubble shows while it streams.
  await page.evaluate(() => {
    const seen: string[] = [];
    (window as unknown as { __seen: string[] }).__seen = seen;
    new MutationObserver(() => {
      const el = document.querySelector('#log article.msg-assistant .content');
      const t = el?.textContent ?? '';
      if (el && !el.querySelector('.typing') && seen[seen.length - 1] !== t) seen.push(t);
    }).observe(document.getElementById('log')!, { childList: true, subtree: true, characterData: true });
  });
  const input = page.getByRole('textbox', { name: 'Message' });
  await input.fill('Tell me about the sea.');
  await page.getByRole('button', { name: 'Send', exact: true }).click();
  const reply = assistantReplies(page).first();
  await expect(reply).toBeVisible();
  await expect(page.getByRole('button', { name: 'Send', exact: true })).toBeVisible({ timeout: 120_000 });
  await expect(reply.locator('.msg-meta')).toContainText(/\d+ tokens/);
  const seen = await page.evaluate(() => (window as unknown as { __seen: string[] }).__seen);
  const final = seen[seen.length - 1] ?? '';
  expect(final.length).toBeGreaterThan(0);
  // Streamed: the bubble showed growing prefixes of the final text before it was done.
  const partial = seen.filter((t) => t.length > 0 && t.length < final.length);
  expect(partial.length).toBeGreaterThan(1);
  // The memory panel shows the live cache.
  await expect(page.locator('#mem-seen')).not.toHaveText('–');
  expect(Number((await page.locator('#mem-seen').textContent())!.replace(/\D/g, ''))).toBeGreaterThan(20);
  await expect(page.locator('#mem-policy')).toHaveText(/FULL · K\/V f16/);
  // The map of resident positions is drawn: one row per (layer, KV head), every position kept (full).
  await expect(page.locator('#kv-map')).not.toHaveAttribute('data-tokens', '0');
  await expect(page.locator('#kv-map')).toHaveAttribute('aria-label', /100% of \d+ positions resident over 3 layers × 2 KV heads/);
  const painted = await page.locator('#kv-map').evaluate((c: HTMLCanvasElement) => {
    const px = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < px.length; i += 4) if (px[i] > 0) n++;
    return { n, rows: c.height };
  });
  expect(painted.n).toBeGreaterThan(0);

  // The weights went to the browser's storage; the model dialog lists them and can delete them.
  await page.getByRole('button', { name: 'Choose model' }).click();
  const stored = page.getByRole('region', { name: 'Stored in this browser' });
  await expect(stored).toBeVisible();
  await expect(stored).toContainText('golden/qwen3');
  await stored.getByRole('button', { name: /^Delete stored model/ }).click();
  await expect(stored).toBeHidden();
  await page.getByRole('button', { name: 'Cancel' }).click();
  expect(errors).toEqual([]);
});

test('a checkpoint run as q4 is kept quantized: the next start reads the stored copy and no safetensors', async ({ page }) => {
  const requests: string[] = [];
  page.on('request', (r) => {
    const path = new URL(r.url()).pathname;
    // GETs: HEADs (the consent dialog's size, the version check) carry no weight byte.
    if (path.startsWith(FIXTURE) && r.method() === 'GET') requests.push(path.slice(FIXTURE.length));
  });
  const send = async (): Promise<string> => {
    const input = page.getByRole('textbox', { name: 'Message' });
    await input.fill('Hello');
    await input.press('Enter');
    const reply = assistantReplies(page).last();
    await expect(reply.locator('.msg-meta')).toContainText(/\d+ tokens/, { timeout: 120_000 });
    return (await reply.locator('.content').textContent()) ?? '';
  };
  await openWithModel(page, page_url({ maxTokens: 4, weights: 'q4' }));
  await waitReady(page);
  const grid = page.locator('#model-grid');
  await expect(grid).toContainText('q4');
  await expect(grid).toContainText(/cold start · [\d.]+ s · [\d.]+ [kKMG]B downloaded/);
  await expect(grid).toContainText(/in this browser, q4/);
  expect(requests).toContain('model.safetensors');
  const first = await send();

  requests.length = 0;
  await page.reload();
  await agreeToModel(page);
  await waitReady(page);
  await expect(grid).toContainText(/warm start · [\d.]+ s · [\d.]+ [kKMG]B read from this browser/);
  // Only the version check and the pre-flight went out: no weight byte of the checkpoint.
  expect(requests.filter((f) => f.endsWith('.safetensors'))).toEqual([]);
  await page.getByRole('button', { name: 'New chat' }).click();
  expect(await send()).toBe(first);

  await page.getByRole('button', { name: 'Choose model' }).click();
  const stored = page.getByRole('region', { name: 'Stored in this browser' });
  await expect(stored).toContainText('q4 copy');
  await stored.getByRole('button', { name: /^Delete stored model/ }).click();
  await expect(stored).toBeHidden();
  await page.getByRole('button', { name: 'Cancel' }).click();
});

test('send with Enter, Stop mid-stream, then a follow-up turn continues the cache', async ({ page }) => {
  await openWithModel(page, page_url({ maxTokens: 400 }));
  await waitReady(page);
  const input = page.getByRole('textbox', { name: 'Message' });

  // Shift+Enter is a newline, not a send.
  await input.click();
  await input.pressSequentially('Write a long story');
  await input.press('Shift+Enter');
  await input.pressSequentially('about a boat.');
  await expect(input).toHaveValue('Write a long story\nabout a boat.');
  await expect(assistantReplies(page)).toHaveCount(0);
  await input.press('Enter');
  await expect(input).toHaveValue('');
  await expect(page.getByRole('log').locator('article.msg-user .content')).toHaveText('Write a long story\nabout a boat.');

  // Stop as soon as some text has streamed in.
  const reply = assistantReplies(page).first();
  const stop = page.getByRole('button', { name: 'Stop', exact: true });
  await expect(stop).toBeVisible();
  await expect(reply.locator('.content')).not.toBeEmpty();
  await expect(reply.locator('.content .typing')).toHaveCount(0, { timeout: 120_000 });
  await stop.click();
  // The UI stops at once.
  await expect(page.getByRole('button', { name: 'Send', exact: true })).toBeVisible({ timeout: 2_000 });
  await expect(stop).toBeHidden();
  await expect(reply.locator('.msg-meta')).toContainText('Stopped', { timeout: 30_000 });
  const stoppedAt = await reply.locator('.content').textContent();
  const tokens = Number((await reply.locator('.msg-meta').textContent())!.match(/(\d+) tokens/)?.[1]);
  expect(tokens).toBeGreaterThan(0);
  expect(tokens).toBeLessThan(400);
  await page.waitForTimeout(1500);
  expect(await reply.locator('.content').textContent()).toBe(stoppedAt);

  // Fewer tokens for the follow-up, through the settings dialog.
  await page.getByRole('button', { name: 'Settings' }).click();
  await page.getByRole('spinbutton', { name: 'Max tokens' }).fill('8');
  await page.getByRole('button', { name: 'Save', exact: true }).click();

  // The engine is still usable, and the follow-up continues the cached conversation.
  await input.fill('Go on.');
  await input.press('Enter');
  await expect(assistantReplies(page)).toHaveCount(2);
  const second = assistantReplies(page).nth(1);
  await expect(second.locator('.msg-meta')).toContainText(/\d+ tokens/, { timeout: 120_000 });
  await expect(second.locator('.msg-meta')).toContainText(/\d+ cached prompt tokens reused/);
  await expect(second.locator('.msg-error')).toHaveCount(0);

  // Both turns are kept in IndexedDB and listed; they come back after a reload.
  await page.reload();
  await agreeToModel(page);
  await waitReady(page);
  await page.getByRole('navigation', { name: 'Saved conversations' }).getByRole('button', { name: /^Write a long story/ }).click();
  await expect(assistantReplies(page)).toHaveCount(2);
  await expect(page.getByRole('log').locator('article.msg-user')).toHaveCount(2);
});

test('a second tab does not load a second copy; it can take the model over', async ({ context }) => {
  const first = await context.newPage();
  await openWithModel(first, page_url({ maxTokens: 4 }));
  await waitReady(first);
  const second = await context.newPage();
  const secondWeightReads: string[] = [];
  second.on('request', (r) => {
    if (r.method() === 'GET' && r.url().endsWith('.safetensors')) secondWeightReads.push(r.url());
  });
  await openWithModel(second, page_url({ maxTokens: 4 }));
  await expect(second.getByRole('status').filter({ hasText: 'already running in another tab' })).toBeVisible();
  await expect(second.locator('#status-dot')).toHaveAttribute('data-state', 'elsewhere');
  // Its worker only described the linked model (HEAD requests); no weight was read for a second copy.
  expect(secondWeightReads).toEqual([]);
  await second.getByRole('button', { name: 'Use it here instead' }).click();
  await waitReady(second);
  await expect(first.getByText('The model moved to another tab')).toBeVisible();
  await expect(first.locator('#status-dot')).toHaveAttribute('data-state', 'elsewhere');
  // And it works in the new tab.
  await second.getByRole('textbox', { name: 'Message' }).fill('Hi');
  await second.getByRole('textbox', { name: 'Message' }).press('Enter');
  await expect(assistantReplies(second).first().locator('.msg-meta')).toContainText(/\d+ tokens/, { timeout: 120_000 });
});

test('a model address that does not exist names the URL', async ({ page }) => {
  await openWithModel(page, '/?model=/test/fixtures/golden/no-such-model/');
  const alert = page.getByRole('alert');
  await expect(alert).toContainText('The model could not be loaded', { timeout: 60_000 });
  await expect(alert).toContainText('/test/fixtures/golden/no-such-model/config.json');
  await expect(page.getByRole('button', { name: 'Send', exact: true })).toBeDisabled();
});

test('a model too big for this GPU is refused with the numbers before any weight is downloaded', async ({ page }) => {
  const weightRequests: string[] = [];
  page.on('request', (r) => {
    // GETs: the consent dialog learns the size with HEADs, which read no weight.
    if (r.method() === 'GET' && new URL(r.url()).pathname.startsWith('/test/fixtures/too-big/')) weightRequests.push(r.url());
  });
  await openWithModel(page, '/?model=/test/fixtures/too-big/');
  const alert = page.getByRole('alert');
  await expect(alert).toContainText('The model could not be loaded', { timeout: 60_000 });
  // SwiftShader's 1 GiB buffers give a 4 GiB budget: an 8B model does not fit even at q4.
  await expect(alert).toContainText(/q4/);
  await expect(alert).toContainText(/GiB/);
  // Only config.json (and the optional converted manifest) was asked for: no weights.
  expect(weightRequests.filter((u) => !/config\.json|webdms-manifest\.json/.test(u))).toEqual([]);
  expect(weightRequests.some((u) => u.endsWith('config.json'))).toBe(true);
});

test('the model dialog offers presets with their sizes and whether they fit this GPU', async ({ page }) => {
  await openWithModel(page, page_url({ maxTokens: 4 }));
  await waitReady(page);
  await page.getByRole('button', { name: 'Choose model' }).click();
  const presets = page.getByRole('region', { name: 'Presets' });
  const big = presets.getByRole('button', { name: /Qwen3 8B DMS 8x/ });
  const small = presets.getByRole('button', { name: /Qwen3 0\.6B/ });
  // SwiftShader allows 1 GiB buffers, a 4 GiB budget: 8B does not fit; 0.6B does, but is far too slow on a software adapter.
  await expect(big).toContainText('too big here');
  await expect(small).toContainText(/too slow here \(~[\d.]+ tok\/s\)/);
  await expect(small).toContainText(/needs [\d.]+ [MG]B/);
  await small.click();
  await expect(page.locator('#model-spec')).toHaveValue('Qwen/Qwen3-0.6B');
  await page.getByRole('button', { name: 'Cancel' }).click();
});

test('without WebGPU the page says which browsers work', async ({ page }) => {
  await page.addInitScript(() => {
    Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined, configurable: true });
  });
  await openWithModel(page, page_url({}));
  const alert = page.getByRole('alert');
  await expect(alert).toContainText('WebGPU is not available');
  await expect(alert).toContainText('Chrome or Edge');
  await expect(alert).toContainText('Safari');
});

test('storage full: the page offers to run the model without storing it', async ({ page }) => {
  await openWithModel(page, '/?model=http://127.0.0.1:9/none/&maxTokens=8');
  await expect(page.getByRole('alert')).toBeVisible({ timeout: 60_000 });
  // Less room than the fixture's weights (about 350 KB, plus the tokenizer), through Chromium's quota override.
  const cdp = await page.context().newCDPSession(page);
  const origin = new URL(page.url()).origin;
  await cdp.send('Storage.overrideQuotaForOrigin', { origin, quotaSize: 300_000 });
  try {
    await page.getByRole('button', { name: 'Choose model' }).click();
    await page.getByLabel('Repo id or URL').fill(FIXTURE);
    await page.getByRole('button', { name: 'Load', exact: true }).click();
    const alert = page.getByRole('alert');
    await expect(alert).toContainText('Not enough storage', { timeout: 120_000 });
    await alert.getByRole('button', { name: 'Run without storing' }).click();
    await waitReady(page);
    await expect(page.locator('#model-grid')).toContainText('not stored');
    const input = page.getByRole('textbox', { name: 'Message' });
    await input.fill('Hi');
    await input.press('Enter');
    await expect(assistantReplies(page).first().locator('.msg-meta')).toContainText(/\d+ tokens/, { timeout: 120_000 });
  } finally {
    await cdp.send('Storage.overrideQuotaForOrigin', { origin });
  }
});
