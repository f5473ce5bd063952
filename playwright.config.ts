/**
 * Playwright for the app, per ../shared/notes/webgpu-here.md: the system Chromium with WebGPU on
 * SwiftShader (only --enable-unsafe-webgpu matters for the adapter), one worker, generous timeouts,
 * since SwiftShader runs the model at a fraction of a GFLOP/s.
 */
import { defineConfig } from '@playwright/test';

/** Ports can be moved (WEBDMS_E2E_PORT, WEBDMS_E2E_PREVIEW_PORT) when another run holds these. */
const DEV_PORT = Number(process.env.WEBDMS_E2E_PORT ?? 5183);
/** The production build (vite build + vite preview): service worker, PWA and widget.js tests. */
export const PREVIEW_PORT = Number(process.env.WEBDMS_E2E_PREVIEW_PORT ?? 4183);
const ci = !!process.env.CI;
/** WEBDMS_E2E_NO_BUILD=1 runs only the dev-server tests (the build specs skip themselves). */
const noBuild = !!process.env.WEBDMS_E2E_NO_BUILD;

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
  '--enable-unsafe-webgpu',
];

export default defineConfig({
  testDir: 'e2e',
  workers: 1,
  fullyParallel: false,
  timeout: 180_000,
  expect: { timeout: 60_000 },
  retries: 0,
  reporter: ci ? [['list'], ['html', { open: 'never', outputFolder: 'playwright-report' }]] : 'list',
  outputDir: 'test-results',
  use: {
    baseURL: `http://127.0.0.1:${DEV_PORT}`,
    launchOptions: { executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium', args: CHROMIUM_ARGS },
    trace: 'retain-on-failure',
    screenshot: 'only-on-failure',
    actionTimeout: 30_000,
    navigationTimeout: 60_000,
  },
  projects: [{ name: 'chromium', use: { browserName: 'chromium' } }],
  webServer: [
    {
      // No HMR: other people's edits must not reload a page in the middle of a test.
      command: `WEBDMS_NO_HMR=1 npx vite --host 127.0.0.1 --port ${DEV_PORT} --strictPort`,
      url: `http://127.0.0.1:${DEV_PORT}/`,
      reuseExistingServer: !ci,
      timeout: 120_000,
      stdout: 'ignore',
      stderr: 'pipe',
    },
    ...(noBuild
      ? []
      : [
          {
            command: `npx vite build --logLevel warn && npx vite preview --host 127.0.0.1 --port ${PREVIEW_PORT} --strictPort`,
            url: `http://127.0.0.1:${PREVIEW_PORT}/`,
            reuseExistingServer: !ci,
            timeout: 240_000,
            stdout: 'ignore' as const,
            stderr: 'pipe' as const,
          },
        ]),
  ],
});
