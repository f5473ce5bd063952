/**
 * The page on a phone-sized viewport (390 x 844, issue 15 point 5): the conversation drawer has a backdrop,
 * closes with Escape, a tap outside or its own close button (the drawer covers the toggle), keeps the page
 * behind it inert, and gives focus back; nothing overflows sideways (the top bar, the Settings' KV section).
 */
import { test, expect, type Page } from '@playwright/test';
import { openWithModel } from './helpers';

test.use({ viewport: { width: 390, height: 844 } });

const noSidewaysOverflow = (page: Page) => page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);

test('phone: the drawer closes with Escape, a tap outside or its close button; the page behind is inert', async ({ page }) => {
  await openWithModel(page, `/?model=${encodeURIComponent('/test/fixtures/golden/qwen3/')}`);
  await expect(page.locator('#status-dot')).toHaveAttribute('data-state', 'ready', { timeout: 150_000 });
  const drawer = page.getByRole('complementary', { name: 'Conversations' });
  const toggle = page.getByRole('button', { name: 'Show conversations' });
  await expect(drawer).toBeHidden();
  // The top bar fits: the Memory button is on screen.
  const mem = (await page.getByRole('button', { name: 'Memory' }).boundingBox())!;
  expect(mem.x + mem.width).toBeLessThanOrEqual(390);
  expect(await noSidewaysOverflow(page)).toBe(true);

  // Escape closes it and focus goes back to the toggle.
  await toggle.click();
  await expect(drawer).toBeVisible();
  await expect(page.locator('#drawer-backdrop')).toBeVisible();
  await expect(page.getByRole('button', { name: 'Hide conversations' })).toBeFocused();
  expect(await page.locator('main.main').evaluate((m) => (m as HTMLElement).inert)).toBe(true);
  await page.keyboard.press('Escape');
  await expect(drawer).toBeHidden();
  await expect(toggle).toBeFocused();
  expect(await page.locator('main.main').evaluate((m) => (m as HTMLElement).inert)).toBe(false);

  // A tap outside it (on the backdrop) closes it.
  await toggle.click();
  await expect(drawer).toBeVisible();
  await page.mouse.click(370, 500);
  await expect(drawer).toBeHidden();

  // Its own close button, where the toggle is covered.
  await toggle.click();
  await page.getByRole('button', { name: 'Hide conversations' }).click();
  await expect(drawer).toBeHidden();
});

test('phone: the Settings dialog, KV section included, fits 390 px', async ({ page }) => {
  await page.goto('/');
  await page.getByRole('button', { name: 'Show conversations' }).click();
  await page.getByRole('button', { name: 'Settings' }).click();
  const dialog = page.getByRole('dialog', { name: 'Settings' });
  await expect(dialog).toBeVisible();
  const fits = await dialog.evaluate((d) => {
    const box = d.getBoundingClientRect();
    const parts = [...d.querySelectorAll('fieldset, select, input, textarea')].map((e) => e.getBoundingClientRect());
    return { scroll: d.scrollWidth <= d.clientWidth, inside: parts.every((r) => r.right <= box.right + 0.5 && r.left >= box.left - 0.5), right: box.right };
  });
  expect(fits).toEqual({ scroll: true, inside: true, right: expect.any(Number) });
  expect(fits.right).toBeLessThanOrEqual(390);
  expect(await noSidewaysOverflow(page)).toBe(true);
});
