/**
 * A lost GPU device (here: Chromium's GPU process crashed through CDP, as a driver reset or GPU crash
 * does) takes the model with it. The page must say so instead of showing "ready" and failing every reply
 * with "device lost", and load the model again when the next message is sent.
 */
import { test, expect, type Page } from '@playwright/test';
import { openWithModel } from './helpers';

const FIXTURE = '/test/fixtures/golden/qwen3/';

async function send(page: Page, text: string) {
  const input = page.getByRole('textbox', { name: 'Message' });
  await input.fill(text);
  await input.press('Enter');
}

test('after a lost GPU device the page says so, and the next message reloads the model and gets a reply', async ({ page, browser }) => {
  await openWithModel(page, `/?${new URLSearchParams({ model: FIXTURE, temperature: '0', maxTokens: '4' })}`);
  const dot = page.locator('#status-dot');
  await expect(dot).toHaveAttribute('data-state', 'ready', { timeout: 150_000 });
  await send(page, 'Hello');
  const replies = page.getByRole('log').locator('article.msg-assistant');
  await expect(replies.first().locator('.msg-meta')).toContainText(/\d+ tokens/, { timeout: 120_000 });

  const cdp = await browser.newBrowserCDPSession();
  await cdp.send('Browser.crashGpuProcess');
  await expect(dot).toHaveAttribute('data-state', 'lost', { timeout: 30_000 });
  await expect(page.locator('.banner', { hasText: 'The GPU was reset' })).toBeVisible();
  await expect(page.locator('#model-meta')).toHaveText('GPU lost: reloads on send');

  await send(page, 'Hello again');
  await expect(replies).toHaveCount(2, { timeout: 150_000 });
  await expect(replies.nth(1).locator('.msg-meta')).toContainText(/\d+ tokens/, { timeout: 150_000 });
  await expect(replies.nth(1).locator('.msg-error')).toHaveCount(0);
  await expect(dot).toHaveAttribute('data-state', 'ready');
  await expect(page.locator('.banner', { hasText: 'The GPU was reset' })).toHaveCount(0);
});
