/** Shared by the page specs. */
import type { Page } from '@playwright/test';

/**
 * Opens the page at `url` (which names a model with ?model=) and agrees to load that model in the
 * consent dialog the page shows for a model that is not the saved choice (app/model-consent.ts).
 */
export async function openWithModel(page: Page, url: string): Promise<void> {
  await page.goto(url);
  await agreeToModel(page);
}

/** Clicks "Load this model" in the consent dialog. */
export async function agreeToModel(page: Page): Promise<void> {
  await page.getByRole('dialog', { name: 'Load a model from a link?' }).getByRole('button', { name: 'Load this model' }).click();
}
