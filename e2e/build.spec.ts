/**
 * The production build, served by `vite preview` on its own port: the embeddable widget.js loaded
 * cross-origin into another site's page, and the PWA (manifest, service worker, offline reload).
 */
import { test, expect } from '@playwright/test';
import { PREVIEW_PORT } from '../playwright.config';

const PREVIEW = `http://127.0.0.1:${PREVIEW_PORT}`;

test.skip(!!process.env.WEBDMS_E2E_NO_BUILD, 'WEBDMS_E2E_NO_BUILD is set: no production build served');

test('widget.js from another origin: <webdms-chat> in shadow DOM loads a model and chats', async ({ page, baseURL }) => {
  // The host page is on the dev server under "localhost", the widget on the preview server under
  // "127.0.0.1": two origins, as when a site embeds the widget from a CDN.
  const host = new URL(baseURL!);
  host.hostname = 'localhost';
  const widget = `${PREVIEW}/widget.js`;
  const model = `${host.origin}/test/fixtures/golden/qwen3/`;
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${host.origin}/e2e/widget-host.html?${new URLSearchParams({ widget, model, maxTokens: '12' })}`);

  const el = page.locator('webdms-chat');
  await expect.poll(() => el.evaluate((e) => !!e.shadowRoot && customElements.get('webdms-chat') !== undefined)).toBe(true);
  // Closed at first; nothing is loaded until it opens.
  expect(page.workers().length).toBe(0);
  await page.getByRole('button', { name: 'Open chat' }).click();
  await expect(el).toHaveAttribute('open', '');
  const panel = page.getByRole('dialog', { name: 'Ask the harbour master' });
  await expect(panel).toBeVisible();
  await expect(el.locator('.dot')).toHaveAttribute('data-state', 'ready', { timeout: 150_000 });
  // The worker came from the widget's origin through a same-origin blob: module.
  expect(page.workers().some((w) => w.url().startsWith('blob:'))).toBe(true);
  // theme="dark" reaches the shadow DOM; the host page's own styles are untouched.
  const colours = await el.evaluate((e) => ({
    panel: getComputedStyle(e.shadowRoot!.querySelector('.panel')!).backgroundColor,
    body: getComputedStyle(document.body).backgroundColor,
  }));
  expect(colours.panel).toBe('rgb(23, 26, 33)');
  expect(colours.body).toBe('rgb(251, 250, 247)');

  const input = panel.getByRole('textbox', { name: 'Message' });
  await input.fill('Hello');
  await input.press('Enter');
  const reply = panel.getByRole('log').locator('.msg.assistant');
  await expect(reply).toHaveCount(1);
  await expect(panel.getByRole('button', { name: 'Send', exact: true })).toBeVisible({ timeout: 120_000 });
  await expect(reply.locator('.content')).not.toBeEmpty();
  await expect(panel.getByRole('alert')).toBeHidden();
  expect(errors).toEqual([]);
});

test('PWA: manifest and service worker; the app reloads offline', async ({ page, context }) => {
  await page.goto(`${PREVIEW}/`);
  await expect(page.getByRole('log')).toBeVisible();
  const manifestHref = await page.locator('link[rel="manifest"]').getAttribute('href');
  expect(manifestHref).toBeTruthy();
  const manifest = await (await page.request.get(new URL(manifestHref!, `${PREVIEW}/`).href)).json();
  expect(manifest.short_name).toBe('WebDMS');
  expect(manifest.display).toBe('standalone');
  expect(manifest.icons.some((i: { sizes: string }) => i.sizes === '512x512')).toBe(true);
  // The service worker installs and takes control.
  await page.evaluate(() => navigator.serviceWorker.ready.then(() => undefined));
  await page.reload();
  await expect.poll(() => page.evaluate(() => !!navigator.serviceWorker.controller), { timeout: 30_000 }).toBe(true);

  await context.setOffline(true);
  try {
    await page.reload();
    expect(await page.evaluate(() => navigator.onLine)).toBe(false);
    await expect(page.getByRole('log')).toBeVisible();
    await expect(page.getByRole('textbox', { name: 'Message' })).toBeVisible();
    await expect(page.locator('.brand-name')).toHaveText('WebDMS');
    // The styles came from the cache too.
    expect(await page.evaluate(() => getComputedStyle(document.querySelector('.app')!).display)).toBe('grid');
    // The model worker started from the cache: the error is about reaching the model, not starting the worker.
    const alert = page.getByRole('alert');
    await expect(alert).toBeVisible({ timeout: 60_000 });
    await expect(alert).not.toContainText('worker failed to start');
  } finally {
    await context.setOffline(false);
  }
});

test('bench.html is in the build: its module worker chunk runs the probe; no service worker there, none precaches it', async ({ page }) => {
  const html = await (await page.request.get(`${PREVIEW}/bench.html`)).text();
  expect(html).toMatch(/<script type="module"[^>]* src="\.\/assets\/bench-[\w-]+\.js">/);
  expect(html).not.toContain('registerSW.js');
  expect(html).not.toContain('rel="manifest"');
  const sw = await (await page.request.get(`${PREVIEW}/sw.js`)).text();
  expect(sw).toContain('index.html');
  expect(sw).not.toMatch(/bench/);
  await page.goto(`${PREVIEW}/bench.html?probe=1`);
  await expect(page.locator('body')).toHaveAttribute('data-done', '1', { timeout: 60_000 });
  const r = JSON.parse((await page.locator('#result').textContent())!);
  expect(r.error).toBeUndefined();
  expect(r.runner).toBe('worker');
  expect(r.adapter).toMatch(/\w/);
  expect(await page.evaluate(() => navigator.serviceWorker.controller)).toBeNull();
});

test('the built page carries a Content-Security-Policy: no inline script, connections only to model hosts', async ({ page }) => {
  const violations: string[] = [];
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) violations.push(m.text());
  });
  const res = await page.goto(`${PREVIEW}/`);
  await expect(page.getByRole('log')).toBeVisible();
  // The header (vite preview) and the meta tag (kept in the precached page) say the same.
  const header = res!.headers()['content-security-policy'];
  const meta = await page.locator('meta[http-equiv="Content-Security-Policy"]').getAttribute('content');
  expect(meta).toBe(header);
  expect(meta).toContain("script-src 'self'");
  const probe = await page.evaluate(async () => {
    const seen: string[] = [];
    document.addEventListener('securitypolicyviolation', (e) => seen.push(e.violatedDirective));
    // An injected inline script does not run.
    const s = document.createElement('script');
    s.textContent = 'window.__inline = 1';
    document.body.append(s);
    // A connection to a host that is neither the app nor a model host (plain http, not localhost or
    // 127.0.0.1) is refused before it is made; the address is loopback all the same, so a broken policy
    // would send nothing off this machine.
    const blocked = await fetch('http://127.0.0.2:9/steal').then(() => false, () => true);
    await new Promise((r) => setTimeout(r, 200));
    return { inline: (window as unknown as { __inline?: number }).__inline ?? null, blocked, seen };
  });
  expect(probe.inline).toBeNull();
  expect(probe.blocked).toBe(true);
  expect(probe.seen).toEqual(expect.arrayContaining(['script-src-elem', 'connect-src']));
  // The app itself runs under it: its scripts, styles and worker load without a violation.
  expect(violations.filter((v) => !/127\.0\.0\.2|inline/.test(v))).toEqual([]);
  expect(await page.evaluate(() => getComputedStyle(document.querySelector('.app')!).display)).toBe('grid');
});
