/**
 * Playwright for the real-size browser test (`npm run test:big:e2e`; not part of `playwright test`):
 * e2e-big/ against its own Vite dev server, the same Chromium flags as playwright.config.ts (SwiftShader
 * WebGPU), one worker, and long timeouts: SwiftShader runs a 0.6B model at well under a token a second.
 * WEBDMS_E2E_BIG_PORT moves the dev server; WEBDMS_BIG_TIMEOUT_MIN sets the per-test limit.
 */
import { defineConfig } from '@playwright/test';
import { CHROMIUM_ARGS } from './playwright.config';

const PORT = Number(process.env.WEBDMS_E2E_BIG_PORT ?? 5193);
const ci = !!process.env.CI;

export default defineConfig({
  testDir: 'e2e-big',
  testMatch: '**/*.spec.ts',
  workers: 1,
  fullyParallel: false,
  timeout: Number(process.env.WEBDMS_BIG_TIMEOUT_MIN ?? 30) * 60_000,
  expect: { timeout: 60_000 },
  retries: 0,
  reporter: 'list',
  outputDir: 'test-results/big',
  use: {
    baseURL: `http://127.0.0.1:${PORT}`,
    launchOptions: { executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium', args: CHROMIUM_ARGS },
    actionTimeout: 30_000,
    navigationTimeout: 120_000,
  },
  projects: [{ name: 'chromium', use: { browserName: 'chromium' } }],
  webServer: {
    // No HMR: other people's edits must not reload the page in the middle of a load.
    command: `WEBDMS_NO_HMR=1 npx vite --host 127.0.0.1 --port ${PORT} --strictPort`,
    url: `http://127.0.0.1:${PORT}/`,
    reuseExistingServer: !ci,
    timeout: 120_000,
    stdout: 'ignore',
    stderr: 'pipe',
  },
});
