/**
 * `?model=` in a link: any page, or a link in a model's reply, can make one. A model that is not the
 * user's saved choice is loaded only after they agree, in a dialog that says where it comes from and how
 * much it would download; until then nothing but HEAD requests reach it and nothing is stored.
 */
import { test, expect, type Page } from '@playwright/test';
import { agreeToModel } from './helpers';

const FIXTURE = '/test/fixtures/golden/qwen3/';
const consent = (page: Page) => page.getByRole('dialog', { name: 'Load a model from a link?' });

/** The weight store's records (model:, pending:, file:), read straight from IndexedDB. */
const storedRecords = (page: Page): Promise<string[]> =>
  page.evaluate(
    () =>
      new Promise<string[]>((resolve, reject) => {
        const req = indexedDB.open('webdms-weights');
        req.onerror = () => reject(req.error);
        req.onsuccess = () => {
          const db = req.result;
          if (!db.objectStoreNames.contains('meta')) return resolve([]);
          const keys = db.transaction('meta').objectStore('meta').getAllKeys();
          keys.onsuccess = () => resolve((keys.result as string[]).filter((k) => /^(model|pending|file):/.test(k)));
        };
      }),
  );

test('a linked model waits for consent, shows its origin and size, and "Keep my model" loads the saved one', async ({ page }) => {
  const requests: string[] = [];
  page.on('request', (r) => {
    const path = new URL(r.url()).pathname;
    if (path.startsWith(FIXTURE)) requests.push(`${r.method()} ${path.slice(FIXTURE.length)}`);
  });
  await page.goto(`/?model=${FIXTURE}`);
  const dialog = consent(page);
  await expect(dialog).toBeVisible();
  await expect(dialog.locator('#consent-origin')).toHaveText(/^127\.0\.0\.1:\d+ \(this site\)$/);
  await expect(dialog.locator('#consent-base')).toHaveText(new RegExp(`${FIXTURE}$`));
  await expect(dialog.locator('#consent-size')).toHaveText(/^[\d.]+ [kKM]B in 5 files$/);
  // Nothing was downloaded or stored: only HEADs went out, and no model is loading.
  expect(requests.length).toBeGreaterThan(0);
  expect(requests.filter((r) => !r.startsWith('HEAD '))).toEqual([]);
  await expect(page.locator('#status-dot')).toHaveAttribute('data-state', 'idle');
  expect(await storedRecords(page)).toEqual([]);

  await dialog.getByRole('button', { name: 'Keep my model' }).click();
  await expect(dialog).toBeHidden();
  // The dialog's close event (which the page acts on) comes a task after it is hidden.
  await expect.poll(() => new URL(page.url()).searchParams.has('model')).toBe(false);
  await expect(page.locator('#model-name')).toHaveText(/Embedded model/);
  expect(requests.filter((r) => !r.startsWith('HEAD '))).toEqual([]);
});

test('a model from another site says so; agreeing loads it, and the saved choice needs no consent', async ({ page, baseURL }) => {
  const other = new URL(baseURL!);
  other.hostname = 'localhost';
  const model = `${other.origin}${FIXTURE}`;
  await page.goto(`/?${new URLSearchParams({ model, maxTokens: '4' })}`);
  await expect(consent(page).locator('#consent-origin')).toHaveText(/^localhost:\d+ \(another site\)$/);
  await expect(consent(page).locator('#consent-size')).toHaveText(/in 5 files/);
  await agreeToModel(page);
  await expect(page.locator('#status-dot')).toHaveAttribute('data-state', 'ready', { timeout: 150_000 });

  // Once it is the saved choice, a link to it loads without asking.
  await page.evaluate((m) => localStorage.setItem('webdms.settings', JSON.stringify({ model: m })), model);
  await page.reload();
  await expect(page.locator('#status-dot')).toHaveAttribute('data-state', /loading|ready/);
  await expect(consent(page)).toBeHidden();
  await expect(page.locator('#status-dot')).toHaveAttribute('data-state', 'ready', { timeout: 150_000 });
});
