/**
 * The smaller points of issue 15 (point 6): max context takes the model's limit, the memory panel's policy is
 * not cut off, "1 token", a reply stopped by max tokens inside its think block says so, the widget's header
 * names the model (not a path), and the no-WebGPU banner names the browsers and the Linux flag.
 */
import { test, expect } from '@playwright/test';
import { openWithModel } from './helpers';

test('Settings: max context defaults to the model\'s limit', async ({ page }) => {
  await openWithModel(page, `/?model=${encodeURIComponent('/test/fixtures/golden/qwen3/')}`);
  await expect(page.locator('#status-dot')).toHaveAttribute('data-state', 'ready', { timeout: 150_000 });
  const limit = await page.evaluate(() => (window as unknown as { __webdms: { state: { modelInfo: { maxContext: number } } } }).__webdms.state.modelInfo.maxContext);
  await page.getByRole('button', { name: 'Settings' }).click();
  const dialog = page.getByRole('dialog', { name: 'Settings' });
  await expect(dialog.getByRole('spinbutton', { name: /Max context/ })).toHaveValue('0');
  await expect(dialog.locator('#max-context-hint')).toHaveText(`0 = the model's limit, at most 4096 (in use now: ${limit})`);
  await dialog.getByRole('button', { name: 'Cancel' }).click();
});

test('the policy is not cut off; "1 token"; max tokens inside a think block says so', async ({ page }) => {
  await page.goto('/');
  // The policy line at its longest fits its cell.
  const fits = await page.locator('#mem-policy').evaluate((dd) => {
    dd.textContent = 'WINDOW · K/V f16 · 12.3k evictions';
    return dd.scrollWidth <= dd.clientWidth + 1;
  });
  expect(fits).toBe(true);
  // A conversation whose reply stopped at max tokens inside <think> (imported: the page's own path in).
  const conv = {
    format: 'webdms-conversations',
    version: 1,
    conversations: [
      {
        id: 'think-1',
        title: 'Stopped while thinking',
        createdAt: 1,
        updatedAt: 2,
        messages: [
          { role: 'user', content: 'What is 23 + 48?', at: 1 },
          { role: 'assistant', content: '<think>\n23 + 48\nones: 3 + 8', at: 2, finishReason: 'length', usage: { promptTokens: 12, cachedTokens: 0, completionTokens: 1, decodeTokensPerSecond: 1, prefillMs: 100 } },
        ],
      },
    ],
  };
  const chooser = page.waitForEvent('filechooser');
  await page.getByRole('button', { name: 'Import' }).click();
  await (await chooser).setFiles({ name: 'c.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify(conv)) });
  await page.getByRole('button', { name: /^Stopped while thinking/ }).click();
  const reply = page.getByRole('log').locator('article.msg-assistant');
  await expect(reply.locator('.msg-meta')).toContainText('reached Max tokens while the model was still thinking, before it wrote an answer');
  await expect(reply.locator('.msg-meta')).toContainText('Reached max tokens · 1 token ·');
  await expect(reply.locator('.msg-meta')).not.toContainText('1 tokens');
});

test('the widget\'s header names the model, not its path', async ({ page }) => {
  await page.route('**/e2e/wt15-widget.html', (r) =>
    r.fulfill({ contentType: 'text/html', body: '<!doctype html><script type="module" src="/app/widget/widget.ts"></script><webdms-chat title="Help" model="default" open></webdms-chat>' }),
  );
  await page.goto('/e2e/wt15-widget.html');
  const sub = page.locator('webdms-chat .sub');
  await expect(sub).toHaveText('WebDMS demo model · runs on your device', { timeout: 150_000 });
});

test('without WebGPU the banner names the browsers and the Linux flag', async ({ page }) => {
  await page.addInitScript(() => {
    Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined, configurable: true });
  });
  await page.goto('/');
  const alert = page.getByRole('alert');
  await expect(alert).toContainText('Safari 26+');
  await expect(alert).toContainText('Firefox 141+');
  await expect(alert).toContainText('On Linux, Chrome needs WebGPU turned on at chrome://flags/#enable-unsafe-webgpu');
});
