/**
 * A new deploy reaches a tab that stays open: the production build is copied and served by a plain
 * static server on 127.0.0.1, the page is installed (service worker in control), then a new version is
 * "deployed" (index.html and the precache revision in sw.js change). On the next reload the new service
 * worker takes over at once and the page offers to reload into the new version.
 */
import { test, expect } from '@playwright/test';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join, normalize } from 'node:path';

test.skip(!!process.env.WEBDMS_E2E_NO_BUILD, 'WEBDMS_E2E_NO_BUILD is set: no production build');

const TYPES: Record<string, string> = {
  '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.json': 'application/json', '.webmanifest': 'application/manifest+json',
  '.svg': 'image/svg+xml', '.png': 'image/png', '.safetensors': 'application/octet-stream', '.md': 'text/markdown',
};

/** A static server over `dir`: no Range, no caching, 404 for what is not there. */
async function serveDir(dir: string): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)).replace(/^\/+/, '') || 'index.html';
    let body: Buffer;
    try {
      body = readFileSync(join(dir, path));
    } catch {
      return void res.writeHead(404).end('not found');
    }
    res.writeHead(200, { 'Content-Type': TYPES[extname(path)] ?? 'application/octet-stream', 'Cache-Control': 'no-cache', 'Content-Length': body.length });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, server };
}

test('a new deploy takes over on the next reload, and the open page offers to reload into it', async ({ page }) => {
  const dir = mkdtempSync(join(tmpdir(), 'webdms-deploy-'));
  cpSync('dist', dir, { recursive: true });
  const { url, server } = await serveDir(dir);
  try {
    await page.goto(url);
    await expect(page.getByRole('log')).toBeVisible();
    await page.evaluate(() => navigator.serviceWorker.ready.then(() => undefined));
    await expect.poll(() => page.evaluate(() => !!navigator.serviceWorker.controller), { timeout: 30_000 }).toBe(true);
    // First install: no update offered.
    await expect(page.getByText('A new version of WebDMS is ready')).toHaveCount(0);

    // Deploy version 2.
    const index = readFileSync(join(dir, 'index.html'), 'utf8');
    writeFileSync(join(dir, 'index.html'), index.replace('<title>', '<meta name="webdms-build" content="2" /><title>'));
    const sw = readFileSync(join(dir, 'sw.js'), 'utf8');
    const updated = sw.replace(/(\{url:"index\.html",revision:")[0-9a-f]+"/, '$1feedfacefeedfacefeedfacefeedface"');
    expect(updated).not.toBe(sw);
    writeFileSync(join(dir, 'sw.js'), updated);

    // The reload is served by the old worker; the browser finds the new one, which takes over at once.
    await page.reload();
    const banner = page.locator('.banner', { hasText: 'A new version of WebDMS is ready' });
    await expect(banner).toBeVisible({ timeout: 60_000 });
    await banner.getByRole('button', { name: 'Reload' }).click();
    await expect(page.locator('meta[name="webdms-build"]')).toHaveAttribute('content', '2', { timeout: 30_000 });
  } finally {
    server.closeAllConnections();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
