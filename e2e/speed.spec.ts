/**
 * Speed expectations (issue 15, point 2): a software WebGPU adapter (SwiftShader here) is detected and
 * named at the top with the speed to expect, and the presets are sized by speed as well as memory; with a
 * hardware adapter (its info faked on the page) neither happens.
 */
import { test, expect, type Page } from '@playwright/test';
import { openWithModel } from './helpers';

const FIXTURE = `/?model=${encodeURIComponent('/test/fixtures/golden/qwen3/')}`;

async function presets(page: Page) {
  await page.getByRole('button', { name: 'Choose model' }).click();
  return page.getByRole('region', { name: 'Presets' });
}

test('software adapter: named at the top with the expected speed; presets too slow here are marked so', async ({ page }) => {
  await openWithModel(page, FIXTURE);
  const banner = page.getByRole('status').filter({ hasText: 'WebGPU runs in software here' });
  await expect(banner).toContainText('(google swiftshader)');
  await expect(banner).toContainText('expect about 0.5-1 tokens/s and 10-30 s before the first token');
  await expect(page.locator('#status-dot')).toHaveAttribute('data-state', 'ready', { timeout: 150_000 });
  const list = await presets(page);
  // Qwen3 0.6B fits SwiftShader's memory but would decode at a small fraction of a token per second.
  await expect(list.getByRole('button', { name: /Qwen3 0\.6B/ })).toContainText(/too slow here \(~0\.\d+ tok\/s\)/);
  await expect(list.getByRole('button', { name: /Qwen3 8B DMS 8x/ })).toContainText('too big here');
});

test('hardware adapter: no software banner, presets fit by memory only', async ({ page }) => {
  await page.addInitScript(() => {
    Object.defineProperty(GPUAdapter.prototype, 'info', {
      configurable: true,
      get: () => ({ vendor: 'nvidia', architecture: 'ampere', device: '', description: '', isFallbackAdapter: false }),
    });
  });
  await openWithModel(page, FIXTURE);
  await expect(page.locator('#status-dot')).toHaveAttribute('data-state', 'ready', { timeout: 150_000 });
  const list = await presets(page);
  await expect(list.getByRole('button', { name: /Qwen3 0\.6B/ })).toContainText(/fits \((f16|q8|q4)\)$/);
  await expect(page.getByText('WebGPU runs in software here')).toHaveCount(0);
});
