/**
 * Choosing another model that fails to load (issue 15, point 3): the model in use stays loaded and usable,
 * the failed choice is not saved, and the error says what the browser knows (offline, the name or the
 * connection failing, an HTTP status, CORS only when it is CORS). The network is Playwright's routes.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, expect, type Page } from '@playwright/test';
import { openWithModel } from './helpers';

const FIXTURE = '/test/fixtures/golden/qwen3/';

async function waitReady(page: Page): Promise<void> {
  await expect(page.locator('#status-dot')).toHaveAttribute('data-state', 'ready', { timeout: 150_000 });
}

/** Opens the model dialog, types `spec` and presses Load. */
async function chooseModel(page: Page, spec: string): Promise<void> {
  await page.getByRole('button', { name: 'Choose model' }).click();
  const dialog = page.getByRole('dialog', { name: 'Model' });
  await dialog.getByLabel('Repo id or URL').fill(spec);
  await dialog.getByRole('button', { name: 'Load', exact: true }).click();
}

const savedModel = (page: Page) => page.evaluate(() => JSON.parse(localStorage.getItem('webdms.settings') ?? '{}').model as string | undefined);

/** Sends `text` and waits for the reply to finish (the first reply on SwiftShader takes a minute or more). */
async function sendAndWait(page: Page, text: string): Promise<void> {
  const n = await page.getByRole('log').locator('article.msg-assistant').count();
  await page.getByRole('textbox', { name: 'Message' }).fill(text);
  await page.getByRole('button', { name: 'Send', exact: true }).click();
  const reply = page.getByRole('log').locator('article.msg-assistant').nth(n);
  await expect(reply.locator('.msg-meta')).toContainText(/\d+ tokens?/, { timeout: 120_000 });
}

test.beforeEach(async ({ page }) => {
  await openWithModel(page, `/?model=${encodeURIComponent(FIXTURE)}&temperature=0&maxTokens=4`);
  await waitReady(page);
});

test('offline: a repo id fails with "you are offline", the loaded model stays and works, the choice is not saved', async ({ page, context }) => {
  const before = await savedModel(page);
  const name = await page.locator('#model-name').textContent();
  await context.route('https://huggingface.co/**', (r) => r.abort('internetdisconnected'));
  await context.setOffline(true);
  try {
    await chooseModel(page, 'someorg/not-reachable');
    const alert = page.getByRole('alert');
    await expect(alert).toContainText('You are offline', { timeout: 90_000 });
    await expect(alert).not.toContainText('CORS');
    await expect(alert).toContainText(`Still using ${name}`);
    await waitReady(page);
    await expect(page.locator('#model-name')).toHaveText(name!);
    // Not saved: the next visit loads what it loaded before.
    expect(await savedModel(page)).toBe(before);
    // The model kept is the one that answers.
    await sendAndWait(page, 'Still there?');
  } finally {
    await context.setOffline(false);
  }
});

test('a server that answers without CORS headers: the error says CORS; the model stays', async ({ page }) => {
  // Another origin (a port of its own) that serves a config.json but sends no Access-Control-Allow-Origin.
  // (Playwright's route.fulfill is not subject to CORS, so this is a real server.)
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"model_type":"qwen3"}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/m/`;
  try {
    await chooseModel(page, base);
    const alert = page.getByRole('alert');
    await expect(alert).toContainText(/127\.0\.0\.1:\d+ answered, but does not let this page read .*CORS/, { timeout: 90_000 });
    await waitReady(page);
    expect(await savedModel(page)).not.toBe(base);
    await expect(page.locator('#model-name')).toHaveText('golden/qwen3');
  } finally {
    server.close();
  }
});

test('a host that cannot be reached: "cannot reach", not CORS; the model stays', async ({ page, context }) => {
  await context.route('https://nowhere.example/**', (r) => r.abort('namenotresolved'));
  await chooseModel(page, 'https://nowhere.example/m/');
  const alert = page.getByRole('alert');
  await expect(alert).toContainText('Cannot reach nowhere.example', { timeout: 90_000 });
  await expect(alert).not.toContainText('CORS');
  await waitReady(page);
  expect(await savedModel(page)).not.toBe('https://nowhere.example/m/');
});

test('an HTTP error names the status; a model that loads is saved as the choice', async ({ page, context }) => {
  await context.route('https://models.example/**', (r) =>
    r.fulfill({ status: 404, headers: { 'access-control-allow-origin': '*' }, body: 'not found' }),
  );
  await chooseModel(page, 'https://models.example/gone/');
  const alert = page.getByRole('alert');
  await expect(alert).toContainText('HTTP 404', { timeout: 90_000 });
  await expect(alert).toContainText('There is no model at this address');
  await waitReady(page);
  expect(await savedModel(page)).not.toBe('https://models.example/gone/');
  // The same fixture chosen in the dialog loads, and only then is it saved.
  await chooseModel(page, FIXTURE);
  await waitReady(page);
  await expect.poll(() => savedModel(page)).toBe(FIXTURE);
  expect(new URL(page.url()).searchParams.get('model')).toBeNull();
});
