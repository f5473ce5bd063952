/**
 * Hyper-scaling mode in the page (app/chains.ts): parallel chains chosen in settings reload the engine
 * with that many KV sequences; a reply streams its chains side by side in a collapsed panel and shows
 * the vote. On the random-weight qwen3-dms fixture no chain states an answer, so the vote keeps the
 * chain the model scores highest.
 */
import { test, expect } from '@playwright/test';
import { openWithModel } from './helpers';

const FIXTURE = '/test/fixtures/golden/qwen3-dms/';

test('parallel chains from settings: side-by-side chains, collapsed, with the vote', async ({ page }) => {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await openWithModel(page, `/?${new URLSearchParams({ model: FIXTURE, temperature: '1', maxTokens: '8', seed: '3' })}`);
  await expect(page.locator('#status-dot')).toHaveAttribute('data-state', 'ready', { timeout: 150_000 });
  await page.locator('#open-settings').click();
  await page.locator('select[name="chains"]').selectOption('4');
  await page.locator('#settings-reload').click();
  await expect(page.locator('#status-dot')).toHaveAttribute('data-state', 'ready', { timeout: 150_000 });

  await page.getByRole('textbox', { name: 'Message' }).fill('Hello there');
  await page.getByRole('button', { name: 'Send', exact: true }).click();
  const reply = page.getByRole('log').locator('article.msg-assistant').first();
  await expect(page.getByRole('button', { name: 'Send', exact: true })).toBeVisible({ timeout: 120_000 });
  const panel = reply.locator('details.chains');
  await expect(panel).toHaveCount(1);
  expect(await panel.evaluate((d) => (d as HTMLDetailsElement).open)).toBe(false);
  await expect(panel.locator('summary')).toContainText('4 chains');
  await expect(reply.locator('.msg-meta')).toContainText(/scored highest/);
  await panel.locator('summary').click();
  const cols = panel.locator('.chain');
  await expect(cols).toHaveCount(4);
  const texts = await cols.locator('pre').allTextContents();
  expect(texts.every((t) => t.length > 0)).toBe(true);
  // The reply shown is the picked chain's text.
  const picked = panel.locator('.chain.chain-picked pre');
  await expect(picked).toHaveCount(1);
  // (The reply is rendered as Markdown, the chain as plain text: compare letters and digits only.)
  const norm = (s: string | null) => (s ?? '').replace(/[^\p{L}\p{N}]/gu, '');
  expect(norm(await reply.locator('.content').textContent())).toBe(norm(await picked.textContent()));
  await page.screenshot({ path: test.info().outputPath('chains.png') });
  expect(errors).toEqual([]);
});
