/**
 * bench.html (app/bench/bench-page.ts, worker/bench/browser-bench.ts) on Chromium's SwiftShader WebGPU: the
 * rows of `dms bench --shape tiny` in the module worker and on the page's main thread, the adapter probe,
 * the drive.py reporting protocol (report=1: POST /log {line}, POST /result), and a parameter error.
 */
import { expect, test, type Page } from '@playwright/test';

interface Row {
  shape: string;
  weights: string;
  context: number;
  kv: string;
  kvDtype: string;
  decodeTokensPerSecond: number;
  prefillTokensPerSecond: number;
  boundTokensPerSecond: number;
  fractionOfBound: number;
  dispatchesPerToken: number;
  submitsPerToken: number;
  gpuStepMs: number | null;
  kernels: Array<{ label: string; dispatches: number; us: number }> | null;
}

interface Result {
  adapter: string | null;
  bandwidthGBps?: number;
  tuning?: { flushEvery: number; mv: string; gemm: string; decode: number | 'off'; decodeSplit: string };
  ttft?: { prompt: number; ms: number; tokensPerSecond: number } | null;
  rows?: Row[];
  runner: 'worker' | 'page';
  userAgent: string;
  adapterInfo: { vendor: string; architecture: string; device: string; description: string; subgroupMinSize: number | null; subgroupMaxSize: number | null } | null;
  features: string[];
  limits: Record<string, number>;
  deviceFeatures?: string[];
  gpuErrors?: string[];
  probe?: true;
  params: Record<string, string>;
  error?: string;
}

/** Opens bench.html with `query`, waits for the run to end, returns the JSON of #result and the workers started. */
async function runBench(page: Page, query: string, timeout = 240_000): Promise<{ result: Result; workers: string[]; errors: string[] }> {
  const workers: string[] = [];
  const errors: string[] = [];
  page.on('worker', (w) => workers.push(w.url()));
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`/bench.html?${query}`);
  await expect(page.locator('body')).toHaveAttribute('data-done', '1', { timeout });
  const result = JSON.parse(await page.locator('#result').textContent() ?? '') as Result;
  return { result, workers, errors };
}

/** Where the adapter reports timestamp-query the device has it and each row has GPU timings; else none. */
function expectTimingsMatchAdapter(r: Result): void {
  const ts = r.features.includes('timestamp-query');
  expect(r.deviceFeatures!.includes('timestamp-query')).toBe(ts);
  for (const row of r.rows!) {
    if (!ts) {
      expect(row.gpuStepMs).toBeNull();
      expect(row.kernels).toBeNull();
      continue;
    }
    expect(row.gpuStepMs).toBeGreaterThan(0);
    expect(row.kernels!.length).toBeGreaterThan(0);
    const timed = row.kernels!.reduce((n, k) => n + k.dispatches, 0);
    // The timed step is the forward pass the decode step replays: at most the step's dispatches.
    expect(timed).toBeGreaterThan(0);
    expect(timed).toBeLessThanOrEqual(row.dispatchesPerToken);
    for (const k of row.kernels!) expect(k.us).toBeGreaterThanOrEqual(0);
  }
}

test('runs the rows of dms bench --shape tiny in a module worker', async ({ page }) => {
  test.setTimeout(300_000);
  const { result: r, workers, errors } = await runBench(page, 'shape=tiny&context=64&kv=full,dms&steps=2&prefill=8&ttft=32');
  expect(r.error).toBeUndefined();
  expect(errors).toEqual([]);
  expect(r.runner).toBe('worker');
  expect(workers.some((u) => u.includes('bench-worker'))).toBe(true);
  expect(r.userAgent).toContain('Chrome');
  // The CLI's JSON keys first, in its order.
  expect(Object.keys(r).slice(0, 5)).toEqual(['adapter', 'bandwidthGBps', 'tuning', 'ttft', 'rows']);
  expect(r.adapter).toMatch(/\w/);
  expect(r.adapterInfo!.subgroupMinSize).toBeGreaterThan(0);
  expect(r.adapterInfo!.subgroupMaxSize).toBeGreaterThanOrEqual(r.adapterInfo!.subgroupMinSize!);
  expect(r.limits.maxStorageBufferBindingSize).toBeGreaterThan(0);
  expect(r.bandwidthGBps).toBeGreaterThan(0);
  expect(r.gpuErrors).toEqual([]);
  // The committed defaults, as `dms bench` reports them without tuning flags.
  expect(typeof r.tuning!.flushEvery).toBe('number');

  const rows = r.rows!;
  expect(rows).toHaveLength(2);
  expect(rows.map((x) => [x.shape, x.weights, x.context, x.kv, x.kvDtype])).toEqual([
    ['tiny', 'q4', 64, 'full', 'f16'],
    ['tiny', 'q4', 64, 'dms', 'f16'],
  ]);
  for (const row of rows) {
    expect(row.decodeTokensPerSecond).toBeGreaterThan(0);
    expect(row.prefillTokensPerSecond).toBeGreaterThan(0);
    expect(row.fractionOfBound).toBeGreaterThan(0);
    expect(row.fractionOfBound).toBeCloseTo(row.decodeTokensPerSecond / row.boundTokensPerSecond, 9);
    // Decode in 7 dispatches per layer (tiny: 4 layers) plus embed, lm_head and sample (docs/contributing.md).
    expect(row.dispatchesPerToken).toBe(7 * 4 + 3);
    expect(row.submitsPerToken).toBeGreaterThanOrEqual(1);
  }
  expectTimingsMatchAdapter(r);
  expect(r.ttft!.prompt).toBe(32);
  expect(r.ttft!.ms).toBeGreaterThan(0);
  expect(r.ttft!.tokensPerSecond).toBeCloseTo((32 * 1000) / r.ttft!.ms, 6);

  // The page shows each row as `dms bench` prints it.
  const shown = (await page.locator('#rows').textContent())!.split('\n').filter((l) => l.startsWith('tiny '));
  expect(shown).toHaveLength(2);
  expect(shown[0]).toMatch(/^tiny q4 ctx 64 full: decode [\d.]+ tok\/s/);
  expect(shown[1]).toMatch(/^tiny q4 ctx 64 dms: decode [\d.]+ tok\/s/);
  await expect(page.locator('body')).toHaveAttribute('data-status', 'ok');
  await expect(page.locator('#log')).toContainText('time to first token, 32-token prompt');
});

test("worker=0 runs on the page's main thread, takes tuning parameters and reports as drive.py expects", async ({ page }) => {
  test.setTimeout(300_000);
  const logLines: string[] = [];
  const posted: unknown[] = [];
  await page.route('**/log', (route) => {
    logLines.push((route.request().postDataJSON() as { line: string }).line);
    return route.fulfill({ body: 'ok' });
  });
  await page.route('**/result', (route) => {
    posted.push(route.request().postDataJSON());
    return route.fulfill({ body: 'ok' });
  });
  const { result: r, workers, errors } = await runBench(page, 'worker=0&report=1&shape=tiny&context=32&kv=dms&steps=1&prefill=8&flush=0&mv=4x64');
  expect(r.error).toBeUndefined();
  expect(errors).toEqual([]);
  expect(r.runner).toBe('page');
  expect(workers).toEqual([]);
  expect(r.tuning!.flushEvery).toBe(0);
  // mv=4x64: 4 rows x 64 lanes (the JSON may add the knob's further parts with their defaults, as the CLI does).
  expect(r.tuning!.mv).toMatch(/^4x64(x\d+)*$/);
  expect(r.ttft).toBeNull();
  expect(r.rows).toHaveLength(1);
  const [row] = r.rows!;
  expect([row.context, row.kv]).toEqual([32, 'dms']);
  expect(row.decodeTokensPerSecond).toBeGreaterThan(0);
  // flush=0: the whole step in one submit.
  expect(row.submitsPerToken).toBe(1);
  expectTimingsMatchAdapter(r);
  // report=1: the result POSTed is the JSON shown; every log line was POSTed, the row's among them.
  expect(posted).toEqual([r]);
  expect(logLines.some((l) => /^tiny q4 ctx 32 dms: decode /.test(l))).toBe(true);
  expect(logLines.some((l) => l.startsWith('copy bandwidth '))).toBe(true);
});

test('probe=1 reports the adapter only; a bad parameter is an error result', async ({ page }) => {
  const { result: r, workers } = await runBench(page, 'probe=1', 60_000);
  expect(r.error).toBeUndefined();
  expect(r.probe).toBe(true);
  expect(r.runner).toBe('worker');
  expect(workers.some((u) => u.includes('bench-worker'))).toBe(true);
  const i = r.adapterInfo!;
  expect(r.adapter).toBe([i.vendor, i.architecture, i.device, i.description].filter(Boolean).join(' ') || 'unknown adapter');
  expect(i.subgroupMinSize).toBeGreaterThan(0);
  expect(r.features.length).toBeGreaterThan(0);
  expect([...r.features].sort()).toEqual(r.features);
  expect(r.limits.maxComputeInvocationsPerWorkgroup).toBeGreaterThanOrEqual(256);
  expect(r.rows).toBeUndefined();
  expect(r.bandwidthGBps).toBeUndefined();

  const bad = await runBench(page, 'shape=qwen3-9b&worker=0', 60_000);
  expect(bad.result.error).toMatch(/shape must be one of tiny, qwen3-0\.6b/);
  await expect(page.locator('body')).toHaveAttribute('data-status', 'error');
  const badTuning = await runBench(page, 'flush=often', 60_000);
  expect(badTuning.result.error).toMatch(/TuningError: flush must be an integer >= 0/);
  expect(badTuning.result.runner).toBe('worker');
});
