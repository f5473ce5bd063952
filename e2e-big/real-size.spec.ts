/**
 * Real size in the browser (`npm run test:big:e2e`; minutes on SwiftShader, not in `playwright test`):
 * a random-weight checkpoint with Qwen3-0.6B's exact shape (bf16, 1.19 GB in 3 shards, Hugging Face
 * layout; the one test/big/real-size.test.ts makes) is served by the weight-store tests' Hugging Face-like
 * server, and headless Chromium loads it through the app's client, the real model worker and the weight
 * store (IndexedDB, persistent profile) as q4 with a 256-token context, and generates 3 greedy tokens.
 *
 * 1. cold start: ready, q4, 596,049,920 parameters, 3 tokens; the weights came over the network.
 * 2. warm start (a reload: a new worker): the load reports `start: 'warm'`, the server sees no request
 *    for any .safetensors file, the store holds one entry, the quantized copy (< 0.4 x the checkpoint),
 *    and the same 3 greedy tokens come out. This needs the worker to store the quantized form rather
 *    than the bf16 files (ModelInfo.load, LoadReport in worker/protocol.ts); the contract checks are soft
 *    so that every figure is measured and written even when they fail.
 *
 * Times per phase, bytes served, storage used and Chromium's memory per process type (from /proc) go
 * to the console and to <WEBDMS_BIG_DIR or /tmp/webdms-big>/chromium-results.json.
 */
import { chromium, expect, test, type BrowserContext, type Page } from '@playwright/test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { CHROMIUM_ARGS } from '../playwright.config';
import type { ChatRequest, LoadRequest, ModelInfo } from '../worker/protocol';
import { BIG_ROOT, ensureCheckpoint, startModelHub, summarize, type Checkpoint, type ModelHub } from './model-hub';
import type { BigHarness, ChatOutcome, LoadOutcome, ProgressEvent } from './pages/big-harness';
import { ChromiumMemory } from './proc-memory';

const HARNESS = '/e2e-big/pages/big.html';
/** Qwen3-0.6B's parameter count (embedding tied), as the model card and worker/model/presets.ts have it. */
const PARAMETERS = 596_049_920;
const MAX_CONTEXT = 256;
const TOKENS = 3;
const LOAD: Omit<LoadRequest, 'model'> = { weights: 'q4', maxContext: MAX_CONTEXT };
const CHAT: ChatRequest = { messages: [{ role: 'user', content: 'Hi' }], maxTokens: TOKENS, temperature: 0 };
/** The stored quantized copy must be well under the bf16 checkpoint (q4 is ~31% of it). */
const STORED_FRACTION = 0.4;

test.describe.configure({ mode: 'serial' });

const t0 = performance.now();
const results: Record<string, unknown> = {};
let checkpoint: Checkpoint;
let hub: ModelHub;
let profile: string;
let ctx: BrowserContext;
let page: Page;
let memory: ChromiumMemory;
let coldIds: number[] | null = null;
let coldInfo: ModelInfo | null = null;
const pageErrors: string[] = [];

const MB = (n: number) => Math.round(n / 1e5) / 10;
const secs = (ms: number) => Math.round(ms / 100) / 10;
const since = (t: number) => secs(performance.now() - t);

/** Calls window.bigHarness[name](arg) in the page. */
function harness<K extends keyof BigHarness>(name: K, arg?: Parameters<BigHarness[K]>[0]): Promise<Awaited<ReturnType<BigHarness[K]>>> {
  return page.evaluate(
    ([n, a]) => ((window as unknown as { bigHarness: Record<string, (x?: unknown) => Promise<unknown>> }).bigHarness[n as string](a)),
    [name, arg] as const,
  ) as Promise<Awaited<ReturnType<BigHarness[K]>>>;
}

async function openHarness(): Promise<number> {
  const t = performance.now();
  await page.goto(new URL(HARNESS, test.info().project.use.baseURL).href);
  await expect(page.locator('#status')).toHaveText('ready');
  return since(t);
}

/** First and last time (s after the request) and bytes of each progress phase the worker reported. */
function phases(progress: ProgressEvent[]): Record<string, { fromS: number; toS: number; events: number; bytes: number; files: number }> {
  const out: Record<string, { fromS: number; toS: number; events: number; bytes: number; files: number; _files: Set<string> }> = {};
  for (const p of progress) {
    const e = (out[p.phase] ??= { fromS: p.t / 1000, toS: p.t / 1000, events: 0, bytes: 0, files: 0, _files: new Set() });
    e.toS = p.t / 1000;
    e.events++;
    e.bytes = Math.max(e.bytes, p.totalBytes);
    if (p.file) e._files.add(p.file);
  }
  return Object.fromEntries(Object.entries(out).map(([k, { _files, ...v }]) => [k, { ...v, files: _files.size }]));
}

function loadFigures(r: Extract<LoadOutcome, { ok: true }>, servedFrom: number, wallS: number) {
  const served = summarize(hub.log().slice(servedFrom));
  const info = r.info;
  return {
    wallS,
    pageMs: r.ms,
    phases: phases(r.progress),
    report: info.load ?? null,
    info: { weights: info.weights, parameters: info.parameters, weightBytes: info.weightBytes, weightMB: MB(info.weightBytes), maxContext: info.maxContext, adapter: info.adapter, stored: info.stored, storageWarning: info.storageWarning },
    served: { ...served, MB: MB(served.bytes), safetensorsMB: MB(served.safetensorsBytes) },
  };
}

function chatFigures(r: Extract<ChatOutcome, { ok: true }>, wallS: number) {
  return {
    wallS,
    pageMs: r.ms,
    firstTokenMs: r.firstTokenMs,
    ids: r.ids,
    promptTokens: r.result.promptTokens,
    completionTokens: r.result.completionTokens,
    finishReason: r.result.finishReason,
    timing: r.result.timing,
    kvPeakBytes: r.result.kv.peakBytes,
    kvAllocatedBytes: r.result.kv.allocatedBytes,
  };
}

function expectOk<T extends { ok: boolean }>(r: T, what: string): asserts r is Extract<T, { ok: true }> {
  expect(r.ok, `${what}: ${JSON.stringify((r as { error?: unknown }).error)}`).toBe(true);
}

/** The headline figures, from what the phases recorded (null where a phase did not run). */
function summary(): Record<string, number | string | null> {
  type Load = ReturnType<typeof loadFigures> & { reloadS?: number };
  type Gen = ReturnType<typeof chatFigures>;
  const cold = results.cold as Load | undefined, warm = results.warm as Load | undefined;
  const cg = results.coldGenerate as Gen | undefined, wg = results.warmGenerate as Gen | undefined;
  const span = (l: Load | undefined, ph: string) => (l?.phases[ph] ? Math.round((l.phases[ph].toS - l.phases[ph].fromS) * 10) / 10 : null);
  const mem = memory?.phases ?? {};
  const peak = (key: string) => {
    const v = Object.values(mem).map((p) => p.peak[key] ?? 0);
    return v.length ? MB(Math.max(...v)) : null;
  };
  const stored = ((results.afterWarm ?? results.afterCold) as { listStored?: { bytes: number }[]; storage?: { usage: number } } | undefined) ?? {};
  return {
    coldLoadS: cold?.wallS ?? null,
    coldStart: cold?.report?.start ?? null,
    coldDownloadedMB: cold ? cold.served.MB : null,
    coldPhasesS: cold ? Object.keys(cold.phases).map((k) => `${k} ${span(cold, k)}`).join(', ') : null,
    coldGenerateS: cg?.wallS ?? null,
    prefillS: cg ? secs(cg.timing.prefillMs) : null,
    promptTokens: cg?.promptTokens ?? null,
    decodeTokensPerSecond: cg ? Math.round(cg.timing.decodeTokensPerSecond * 1000) / 1000 : null,
    warmLoadS: warm?.wallS ?? null,
    warmStart: warm?.report?.start ?? null,
    warmDownloadedMB: warm ? warm.served.MB : null,
    warmSafetensorsRequests: warm ? warm.served.safetensorsRequests : null,
    warmPhasesS: warm ? Object.keys(warm.phases).map((k) => `${k} ${span(warm, k)}`).join(', ') : null,
    warmGenerateS: wg?.wallS ?? null,
    storedMB: stored.listStored?.length ? MB(stored.listStored.reduce((n, m) => n + m.bytes, 0)) : null,
    originUsageMB: stored.storage ? MB(stored.storage.usage) : null,
    gpuProcessPeakRssMB: peak('gpu-process'),
    rendererPeakRssMB: peak('renderer'),
    chromiumPeakPssMB: peak('totalPss'),
    testRunnerPeakRssMB: (results.testRunnerPeakRssMB as number | undefined) ?? null,
    specS: (results.specS as number | undefined) ?? null,
  };
}

test.beforeAll(async () => {
  const t = performance.now();
  checkpoint = ensureCheckpoint();
  results.checkpoint = { dir: checkpoint.dir, safetensorsMB: MB(checkpoint.safetensorsBytes), tensorMB: MB(checkpoint.tensorBytes), shards: checkpoint.shards.length, madeS: checkpoint.madeSeconds, wallS: since(t) };
  hub = await startModelHub(checkpoint);
  results.server = { base: hub.base, startS: hub.startSeconds };
  results.machine = { cpus: cpus().length, memoryGB: Math.round(totalmem() / 1e8) / 10 };

  profile = mkdtempSync(join(tmpdir(), 'webdms-big-profile-'));
  const tl = performance.now();
  ctx = await chromium.launchPersistentContext(profile, { executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium', args: CHROMIUM_ARGS });
  page = ctx.pages()[0] ?? (await ctx.newPage());
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error' && pageErrors.length < 50) pageErrors.push(m.text());
  });
  memory = new ChromiumMemory(profile);
  memory.mark('idle');
  const openS = await openHarness();
  // Persistent storage, granted the way e2e/store.spec.ts does (Chromium has no prompt for it).
  const cdp = await ctx.newCDPSession(page);
  await cdp.send('Browser.setPermission', { origin: new URL(page.url()).origin, permission: { name: 'persistent-storage' }, setting: 'granted' });
  expect(await harness('persist')).toBe(true);
  results.browser = { launchAndOpenS: since(tl), openS, userAgent: await page.evaluate(() => navigator.userAgent) };
});

test.afterAll(async () => {
  memory?.stop();
  if (memory) results.memory = Object.fromEntries(Object.entries(memory.phases).map(([k, v]) => [k, { samples: v.samples, peakMB: Object.fromEntries(Object.entries(v.peak).map(([t, b]) => [t, MB(b)])) }]));
  results.pageErrors = pageErrors;
  results.specS = since(t0);
  // This process serves the shards from memory (test/store/hub-server.ts keeps files in memory).
  results.testRunnerPeakRssMB = MB(process.resourceUsage().maxRSS * 1024);
  results.summary = summary();
  await ctx?.close().catch(() => undefined);
  await hub?.close().catch(() => undefined);
  if (profile && !process.env.WEBDMS_BIG_KEEP_PROFILE) rmSync(profile, { recursive: true, force: true });
  const file = join(BIG_ROOT, 'chromium-results.json');
  writeFileSync(file, JSON.stringify(results, null, 2));
  console.log(`chromium real-size results (${file}):\n${JSON.stringify(results, null, 2)}`);
  console.log(`summary: ${JSON.stringify(results.summary)}`);
});

test('cold start: the 1.19 GB bf16 checkpoint loads from the network as q4 and generates 3 greedy tokens', async () => {
  memory.mark('cold load');
  let from = hub.log().length;
  let t = performance.now();
  const load = await harness('load', { model: hub.base, ...LOAD });
  const loadS = since(t);
  expectOk(load, 'cold load');
  const cold = loadFigures(load, from, loadS);
  results.cold = cold;
  coldInfo = load.info;
  expect(load.info.weights).toBe('q4');
  expect(load.info.architecture).toBe('qwen3');
  expect(load.info.parameters).toBe(PARAMETERS);
  expect(load.info.numLayers).toBe(28);
  expect(load.info.maxContext).toBe(MAX_CONTEXT);
  // q4 of 0.6B: ~336 MB on the GPU, under a third of the bf16 bytes.
  expect(load.info.weightBytes).toBeGreaterThan(0.25 * checkpoint.tensorBytes);
  expect(load.info.weightBytes).toBeLessThan(STORED_FRACTION * checkpoint.tensorBytes);
  // The weights came over the network: at least every tensor byte of the shards was served.
  expect(cold.served.safetensorsBytes).toBeGreaterThanOrEqual(checkpoint.tensorBytes);

  memory.mark('cold generate');
  from = hub.log().length;
  t = performance.now();
  const chat = await harness('chat', CHAT);
  const chatS = since(t);
  expectOk(chat, 'cold generate');
  results.coldGenerate = chatFigures(chat, chatS);
  memory.mark('idle after cold');
  results.afterCold = {
    storage: await harness('estimate'),
    listStored: await harness('listStored'),
    requestsDuringGenerate: hub.log().length - from,
  };
  expect(chat.ids).toHaveLength(TOKENS);
  expect(chat.result.completionTokens).toBe(TOKENS);
  expect(chat.result.finishReason).toBe('length');
  coldIds = chat.ids;
});

test('warm start after a reload: the stored quantized copy loads without any safetensors request, same tokens', async () => {
  expect(coldInfo, 'the cold start did not complete').not.toBeNull();
  const safetensorsBytes = checkpoint.safetensorsBytes;
  // What the first start reported (LoadReport, worker/protocol.ts).
  const coldReport = coldInfo!.load;
  expect.soft(coldReport, 'the cold load has no ModelInfo.load report').toBeDefined();
  expect.soft(coldReport?.start).toBe('cold');
  expect.soft(coldReport?.weights).toBe('q4');
  expect.soft(coldReport?.downloadedBytes ?? 0).toBeGreaterThanOrEqual(checkpoint.tensorBytes);
  expect.soft(coldReport?.stored).toBe('quantized');
  expect.soft(coldReport?.storedBytes ?? Infinity).toBeLessThan(STORED_FRACTION * safetensorsBytes);

  memory.mark('reload');
  const from = hub.log().length;
  const reloadT = performance.now();
  await page.reload();
  await expect(page.locator('#status')).toHaveText('ready');
  const reloadS = since(reloadT);

  memory.mark('warm load');
  const t = performance.now();
  const load = await harness('load', { model: hub.base, ...LOAD });
  const loadS = since(t);
  expectOk(load, 'warm load');
  const warm = { reloadS, ...loadFigures(load, from, loadS), requests: hub.log().slice(from).map((r) => `${r.method} ${r.file}${r.range ? ` ${r.range}` : ''} ${r.status}`) };
  results.warm = warm;
  const stored = await harness('listStored');
  results.afterWarm = { storage: await harness('estimate'), listStored: stored };
  const report = load.info.load;
  expect(load.info.weights).toBe('q4');
  expect(load.info.parameters).toBe(PARAMETERS);
  expect.soft(report, 'the warm load has no ModelInfo.load report').toBeDefined();
  expect.soft(report?.start).toBe('warm');
  expect.soft(report?.downloadedBytes ?? Infinity).toBeLessThan(1e6);
  expect.soft(report?.stored).toBe('quantized');
  // The server saw no request for any .safetensors file since the reload (a version check of config.json is fine).
  expect.soft(hub.log().slice(from).filter((r) => r.file.endsWith('.safetensors')).map((r) => `${r.method} ${r.file} ${r.range ?? ''}`)).toEqual([]);
  // The store holds one model, the quantized copy, not the 1.19 GB of bf16.
  expect.soft(stored.map((m) => ({ name: m.name, MB: MB(m.bytes), complete: m.complete }))).toHaveLength(1);
  expect.soft(stored[0]?.bytes ?? Infinity).toBeLessThan(STORED_FRACTION * safetensorsBytes);

  memory.mark('warm generate');
  const tg = performance.now();
  const chat = await harness('chat', CHAT);
  const chatS = since(tg);
  expectOk(chat, 'warm generate');
  results.warmGenerate = chatFigures(chat, chatS);
  memory.mark('idle after warm');
  expect(chat.ids).toEqual(coldIds);
});
