/**
 * The first visit and the embedded demo model (issue 15, point 1): the page offers the real choice (a model
 * from Hugging Face, with download size, memory and fit here, or the 30 MB offline demo), says next to the
 * model's name that the demo is a small offline demo and what it can do, and its suggestions are the tasks
 * it was trained on (test/cli/demo-suggestions.test.ts checks the model answers them right).
 */
import { test, expect } from '@playwright/test';
import { modelPresets } from '../worker/model/presets';

test('first visit: the choice of a real model or the offline demo; the demo says what it is and suggests what it can do', async ({ page }) => {
  await page.goto('/');
  const welcome = page.getByRole('region', { name: 'Choose a model to start' });
  await expect(welcome).toBeVisible();
  // Real models from Hugging Face, each with its download size and the memory it needs.
  const real = welcome.getByRole('group', { name: 'Models from Hugging Face' });
  const qwen = real.getByRole('button', { name: /^Download Qwen3 0\.6B, [\d.]+ MB download at q4, needs [\d.]+ GB of GPU memory/ });
  await expect(qwen).toBeVisible();
  await expect(real.getByRole('button')).toHaveCount(modelPresets().length);
  // The demo, offered with what it is.
  await expect(welcome).toContainText('The offline demo (30 MB)');
  await expect(welcome).toContainText('15M-parameter demo');
  // The demo loads meanwhile (it ships with the page); the model chip says what it is.
  await expect(page.locator('#status-dot')).toHaveAttribute('data-state', 'ready', { timeout: 150_000 });
  await expect(page.locator('#model-badge')).toHaveText('Offline demo');
  await expect(page.locator('#model-badge')).toBeVisible();
  await expect(page.getByRole('button', { name: /^Choose model \(now: .*15M-parameter offline demo: spaced arithmetic and variable tracking/ })).toBeVisible();
  // Its suggestions are its training tasks, not a haiku.
  const chips = page.getByRole('group', { name: 'Things the demo model was trained to do' });
  await expect(chips.getByRole('button', { name: 'What is 23 + 48?' })).toBeVisible();
  await expect(chips).not.toContainText('haiku');

  // Choosing the demo closes the first-run choice for good; the demo's note stays, with a way to a real model.
  await welcome.getByRole('button', { name: 'Use the offline demo' }).click();
  await expect(welcome).toBeHidden();
  await expect(page.getByRole('log')).toContainText('addition and multiplication written with spaces');
  await expect(page.getByRole('button', { name: 'Choose a real model' })).toBeVisible();
  await chips.getByRole('button', { name: 'What is 23 + 48?' }).click();
  await expect(page.getByRole('textbox', { name: 'Message' })).toHaveValue('What is 23 + 48?');
  await page.reload();
  await expect(page.getByRole('log')).toContainText('addition and multiplication written with spaces');
  await expect(page.getByRole('region', { name: 'Choose a model to start' })).toHaveCount(0);
  await page.getByRole('button', { name: 'Choose a real model' }).click();
  await expect(page.getByRole('dialog', { name: 'Model' })).toBeVisible();
});

test('first visit: a real model chosen from the list is loaded, and saved only once it loads', async ({ page, context }) => {
  await context.route('https://huggingface.co/**', (r) => r.fulfill({ status: 404, headers: { 'access-control-allow-origin': '*' }, body: 'not found' }));
  await page.goto('/');
  await expect(page.locator('#status-dot')).toHaveAttribute('data-state', 'ready', { timeout: 150_000 });
  const welcome = page.getByRole('region', { name: 'Choose a model to start' });
  await welcome.getByRole('button', { name: /^Download Qwen3 0\.6B/ }).click();
  // The hub is routed to 404 here: the load fails, the demo stays, nothing is saved as the model.
  const alert = page.getByRole('alert');
  await expect(alert).toContainText('HTTP 404', { timeout: 60_000 });
  await expect(alert).toContainText('Still using Embedded model');
  await expect(page.locator('#status-dot')).toHaveAttribute('data-state', 'ready');
  expect(await page.evaluate(() => JSON.parse(localStorage.getItem('webdms.settings') ?? '{}').model)).toBe('default');
});

test('a model named by a link skips the first-run choice; a real model gets general suggestions', async ({ page }) => {
  await page.goto(`/?model=${encodeURIComponent('/test/fixtures/golden/qwen3/')}`);
  await page.getByRole('dialog', { name: 'Load a model from a link?' }).getByRole('button', { name: 'Load this model' }).click();
  await expect(page.locator('#status-dot')).toHaveAttribute('data-state', 'ready', { timeout: 150_000 });
  await expect(page.getByRole('region', { name: 'Choose a model to start' })).toHaveCount(0);
  await expect(page.locator('#model-badge')).toBeHidden();
  await expect(page.getByRole('group', { name: 'Suggestions' })).toBeVisible();
});
