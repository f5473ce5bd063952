/** The chat page: wires the worker client, the conversation log, settings, model picker and memory panel. */
import { drawKvMap, residentShare } from './kv-map';
import './styles.css';
import { EngineClient, TabLock } from './engine-client';
import { renderMessage } from './render';
import { streamPainter } from './stream-paint';
import { watchForUpdates } from './sw-update';
import { askToLoadModel } from './model-consent';
import { paintChains, voteLine } from './chains';
import { droppedText, formatBytes, formatCount, formatDuration, formatRatio, relativeTime } from './format';
import {
  DEFAULT_SETTINGS,
  deleteConversation,
  listConversations,
  loadConversation,
  loadSettings,
  newId,
  saveConversation,
  saveSettings,
  titleFrom,
  type Conversation,
  type Settings,
  type StoredMessage,
} from './store';
import { modelPresets, presetFit, type ChatMessage, type ChatRequest, type KvStats, type LoadProgress, type LoadRequest, type ModelInfo } from '../worker/protocol';

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from index.html`);
  return el as T;
};

const NO_WEBGPU_UI =
  'WebGPU is not available in this browser, and WebDMS needs it to run the model on your GPU. ' +
  'It works in Chrome or Edge 113+ (Windows, macOS, ChromeOS; Android 121+), Safari 26+ and Firefox 141+ on Windows.';

// ---------------------------------------------------------------- state

const params = new URLSearchParams(location.search);
const settings: Settings = loadSettings();
/**
 * `?model=<url or repo id>` points the page at a model without saving it (tests use it for fixtures); one
 * that is not the saved choice is loaded only once the user agrees (app/model-consent.ts).
 */
let urlModel = params.get('model');
const numParam = (k: string): number | undefined => {
  const v = params.get(k);
  return v !== null && v !== '' && Number.isFinite(Number(v)) ? Number(v) : undefined;
};
/**
 * `?maxTokens=`, `?temperature=`, `?weights=` (f32|f16|q8|q4) start this visit with those values (not saved
 * unless settings are saved); `?seed=` fixes sampling.
 */
const urlSeed = numParam('seed');
{
  const w = params.get('weights');
  if (w === 'f32' || w === 'f16' || w === 'q8' || w === 'q4') settings.weights = w;
  const mt = numParam('maxTokens');
  const temp = numParam('temperature');
  if (mt !== undefined) settings.maxTokens = Math.max(1, Math.round(mt));
  if (temp !== undefined) settings.temperature = temp;
}

/** lost: the GPU device went away (driver reset, GPU process crash); the model reloads on the next send. */
type ModelState = 'idle' | 'loading' | 'ready' | 'error' | 'elsewhere' | 'lost';
let modelState: ModelState = 'idle';
let modelInfo: ModelInfo | null = null;
let loadedSpec = '';
const client = new EngineClient();
const lock = new TabLock();

let conv: Conversation = blankConversation();
interface Generation {
  msg: StoredMessage;
  el: HTMLElement;
  done: Promise<void>;
  stopped: boolean;
}
let generation: Generation | null = null;
let lastKv: KvStats | null = null;
let kvHistory: { seen: number; kept: number }[] = [];

// ---------------------------------------------------------------- elements

const log = $('log');
const input = $<HTMLTextAreaElement>('input');
const sendBtn = $<HTMLButtonElement>('send');
const stopBtn = $<HTMLButtonElement>('stop');
const composer = $<HTMLFormElement>('composer');
const banners = $('banners');

function blankConversation(): Conversation {
  const now = Date.now();
  return { id: newId(), title: 'New chat', createdAt: now, updatedAt: now, messages: [] };
}

// ---------------------------------------------------------------- theme

function applyTheme(): void {
  const t = settings.theme;
  if (t === 'system') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = t;
  const label = t === 'system' ? 'System' : t === 'dark' ? 'Dark' : 'Light';
  $('theme-label').textContent = label;
  $('theme-toggle').setAttribute('aria-label', `Theme: ${label.toLowerCase()}`);
}
$('theme-toggle').addEventListener('click', () => {
  settings.theme = settings.theme === 'system' ? 'dark' : settings.theme === 'dark' ? 'light' : 'system';
  saveSettings(settings);
  applyTheme();
});

// ---------------------------------------------------------------- banners

interface BannerAction {
  label: string;
  primary?: boolean;
  run: () => void;
}

function showBanner(key: string, kind: 'error' | 'warn' | 'info', title: string, text: string, actions: BannerAction[] = []): void {
  clearBanner(key);
  const b = document.createElement('div');
  b.className = `banner banner-${kind}`;
  b.dataset.key = key;
  b.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  const body = document.createElement('div');
  body.className = 'banner-body';
  const h = document.createElement('strong');
  h.textContent = title;
  const p = document.createElement('p');
  p.textContent = text;
  body.append(h, p);
  const acts = document.createElement('div');
  acts.className = 'banner-actions';
  for (const a of actions) {
    const btn = document.createElement('button');
    btn.type = 'button';
    btn.className = `btn ${a.primary ? 'btn-primary' : 'btn-ghost'}`;
    btn.textContent = a.label;
    btn.addEventListener('click', () => {
      clearBanner(key);
      a.run();
    });
    acts.append(btn);
  }
  const close = document.createElement('button');
  close.type = 'button';
  close.className = 'btn btn-icon banner-close';
  close.setAttribute('aria-label', 'Dismiss');
  close.textContent = '×';
  close.addEventListener('click', () => clearBanner(key));
  b.append(body, acts, close);
  banners.append(b);
}

function clearBanner(key?: string): void {
  for (const b of banners.querySelectorAll<HTMLElement>('.banner')) if (!key || b.dataset.key === key) b.remove();
}

// ---------------------------------------------------------------- model loading

function currentSpec(): string {
  return urlModel ?? settings.model;
}

/** A page-relative path or URL becomes absolute (the worker lives at another URL); 'default' and repo ids pass through. */
function specForWorker(spec: string): string {
  const s = spec.trim();
  if (s === '' || s === 'default') return 'default';
  if (/^[\w.-]+\/[\w.-]+(@[\w.-]+)?$/.test(s) && !s.startsWith('.')) return s;
  try {
    return new URL(s, location.href).href;
  } catch {
    return s;
  }
}

function specLabel(spec: string): string {
  if (spec === 'default' || spec === '') return 'Embedded model';
  try {
    const u = new URL(spec, location.href);
    const parts = u.pathname.split('/').filter(Boolean);
    const i = parts.indexOf('resolve');
    if (u.hostname.endsWith('huggingface.co') && parts.length >= 2) return `${parts[0]}/${parts[1]}`;
    return parts.slice(i >= 0 ? 0 : -2).join('/') || u.host;
  } catch {
    return spec;
  }
}

function setModelState(s: ModelState): void {
  modelState = s;
  $('status-dot').dataset.state = s;
  updateComposer();
}

function updateModelChip(): void {
  const name = $('model-name');
  const meta = $('model-meta');
  if (modelInfo && modelState === 'ready') {
    name.textContent = !modelInfo.name || /^https?:/.test(modelInfo.name) ? specLabel(loadedSpec) : modelInfo.name;
    name.title = modelInfo.name;
    meta.textContent = [formatCount(modelInfo.parameters), modelInfo.weights, modelInfo.dms ? 'DMS' : null].filter(Boolean).join(' · ');
  } else {
    name.textContent = modelState === 'loading' ? `Loading ${specLabel(loadedSpec)}…` : modelState === 'elsewhere' ? 'In use in another tab' : specLabel(currentSpec());
    meta.textContent = modelState === 'error' ? 'failed to load' : modelState === 'idle' ? 'not loaded' : modelState === 'lost' ? 'GPU lost: reloads on send' : '';
  }
}

let persistAsked = false;

async function loadModel(spec: string, opts: { steal?: boolean; wait?: boolean; memoryFallback?: boolean } = {}): Promise<void> {
  if (!('gpu' in navigator) || !navigator.gpu) {
    setModelState('error');
    updateModelChip();
    showBanner('load', 'error', 'WebGPU is not available', NO_WEBGPU_UI);
    return;
  }
  loadedSpec = spec;
  clearBanner('load');
  clearBanner('lock');
  clearBanner('gpu');
  if (!lock.held) {
    let ok: boolean;
    if (opts.steal || opts.wait) {
      if (opts.wait) {
        setModelState('loading');
        updateModelChip();
        showBanner('lock', 'info', 'Waiting for the other tab', 'The model will load here as soon as the other WebDMS tab closes or unloads its model.');
      }
      ok = await lock.acquire(!!opts.steal);
      clearBanner('lock');
    } else {
      ok = await lock.tryAcquire();
    }
    if (!ok) {
      setModelState('elsewhere');
      updateModelChip();
      showBanner(
        'lock',
        'warn',
        'WebDMS is already running in another tab',
        'A model is loaded in another tab of this browser. Loading it here as well would hold a second copy in GPU memory, which can crash both tabs.',
        [
          { label: 'Use it here instead', primary: true, run: () => void loadModel(spec, { steal: true }) },
          { label: 'Wait for the other tab', run: () => void loadModel(spec, { wait: true }) },
        ],
      );
      return;
    }
  }
  await stopGeneration();
  // Ask once that the browser keep stored weights (only a window can; the worker cannot).
  if (!persistAsked) {
    persistAsked = true;
    void navigator.storage?.persist?.().catch(() => false);
  }
  modelInfo = null;
  setModelState('loading');
  updateModelChip();
  showProgress({ phase: 'fetch', loadedBytes: 0, totalBytes: 0 });
  const req: LoadRequest = {
    model: specForWorker(spec),
    kv: settings.kv === 'auto' ? undefined : settings.kv,
    kvBudget: settings.kvBudget > 0 ? settings.kvBudget : undefined,
    maxContext: settings.maxContext > 0 ? settings.maxContext : undefined,
    weights: settings.weights === 'auto' ? undefined : settings.weights,
    memoryFallback: opts.memoryFallback,
    chains: settings.chains > 1 ? settings.chains : undefined,
  };
  const started = performance.now();
  try {
    let finished = false;
    const info = await client.load(
      req,
      (p) => {
        // Progress calls are asynchronous messages: ignore any that arrive after the load settled.
        if (loadedSpec === spec && !finished && p.phase !== 'ready') showProgress(p);
      },
      (message) => {
        if (loadedSpec !== spec || modelInfo !== info) return;
        modelInfo = null;
        setModelState('lost');
        updateModelChip();
        showBanner('gpu', 'warn', 'The GPU was reset', `${message}. The model will load again when you send your next message.`, [
          { label: 'Load it now', primary: true, run: () => void loadModel(spec) },
        ]);
      },
    ).finally(() => (finished = true));
    if (loadedSpec !== spec) return;
    modelInfo = info;
    setModelState('ready');
    lastKv = null;
    kvHistory = [];
    renderModelGrid();
    updateMemory(null, 0);
    if (info.storageWarning) showBanner('storage', 'info', info.stored ? 'Using the stored copy' : 'Running without storing', info.storageWarning);
    input.focus();
    console.info(`[webdms] model ready in ${((performance.now() - started) / 1000).toFixed(1)} s`, info);
  } catch (e) {
    if (loadedSpec !== spec) return;
    const msg = (e as Error)?.message ?? String(e);
    setModelState('error');
    lock.releaseLock();
    if ((e as Error)?.name === 'StorageQuotaError' || (e as Error)?.name === 'QuotaExceededError') {
      showBanner('load', 'error', 'Not enough storage for this model', msg, [
        { label: 'Run without storing', primary: true, run: () => void loadModel(spec, { memoryFallback: true }) },
        { label: 'Free up space', run: openModelDialog },
      ]);
    } else {
      showBanner('load', 'error', 'The model could not be loaded', msg, [
        { label: 'Retry', primary: true, run: () => void loadModel(spec) },
        { label: 'Choose another model', run: openModelDialog },
      ]);
    }
  } finally {
    if (loadedSpec === spec) hideProgress();
    updateModelChip();
  }
}

lock.onLost = () => {
  client.terminate();
  void stopGeneration();
  modelInfo = null;
  setModelState('elsewhere');
  updateModelChip();
  showBanner('lock', 'warn', 'The model moved to another tab', 'Another WebDMS tab took over the model, and this tab let its copy go to free the GPU memory.', [
    { label: 'Load it here again', primary: true, run: () => void loadModel(loadedSpec || currentSpec(), { steal: true }) },
  ]);
};

// ---------------------------------------------------------------- load progress

const progressSpeed = { t: 0, bytes: 0, bps: 0 };

function showProgress(p: LoadProgress): void {
  const box = $('progress');
  box.hidden = false;
  const phase = {
    fetch: 'Downloading',
    stream: 'Downloading and quantizing on the GPU',
    upload: 'Loading weights onto the GPU',
    store: 'Saving the quantized model for the next start',
    compile: 'Compiling GPU kernels',
    ready: 'Ready',
  }[p.phase];
  $('progress-phase').textContent = phase;
  $('progress-file').textContent = p.file ?? '';
  const pct = p.totalBytes > 0 ? Math.min(100, (100 * p.loadedBytes) / p.totalBytes) : 0;
  $('progress-fill').style.width = `${pct.toFixed(1)}%`;
  $('progress-fill').classList.toggle('indeterminate', p.totalBytes <= 0);
  $('progress-bar').setAttribute('aria-valuenow', pct.toFixed(0));
  $('progress-bytes').textContent = p.totalBytes > 0 ? `${formatBytes(p.loadedBytes)} of ${formatBytes(p.totalBytes)} (${pct.toFixed(0)}%)` : p.loadedBytes > 0 ? formatBytes(p.loadedBytes) : 'Starting…';
  // The worker reports speed while fetching; otherwise smooth our own estimate.
  const now = performance.now();
  if (progressSpeed.t && now > progressSpeed.t && p.loadedBytes >= progressSpeed.bytes) {
    const inst = ((p.loadedBytes - progressSpeed.bytes) * 1000) / (now - progressSpeed.t);
    progressSpeed.bps = progressSpeed.bps ? 0.7 * progressSpeed.bps + 0.3 * inst : inst;
  }
  progressSpeed.t = now;
  progressSpeed.bytes = p.loadedBytes;
  const bps = p.bytesPerSecond ?? progressSpeed.bps;
  const fetching = p.phase !== 'compile' && p.phase !== 'ready';
  $('progress-speed').textContent = fetching && bps > 0 ? `${formatBytes(bps)}/s` : '';
  $('progress-eta').textContent = fetching && bps > 0 && p.totalBytes > p.loadedBytes ? `${formatDuration((p.totalBytes - p.loadedBytes) / bps)} left` : '';
}

function hideProgress(): void {
  $('progress').hidden = true;
  progressSpeed.t = 0;
  progressSpeed.bytes = 0;
  progressSpeed.bps = 0;
}

// ---------------------------------------------------------------- memory panel

function updateMemory(kv: KvStats | null, tps: number): void {
  if (kv) lastKv = kv;
  const s = lastKv;
  const heads = modelInfo ? Math.max(1, modelInfo.numLayers * modelInfo.numKvHeads) : 1;
  if (!s) {
    for (const id of ['mem-seen', 'mem-kept', 'mem-bytes', 'mem-alloc', 'mem-policy']) $(id).textContent = '–';
    $('mem-ratio').textContent = '–';
    $('mem-ratio').classList.add('empty');
    $('mem-bar-ctx').style.width = '0%';
    $('mem-bar-kept').style.width = '0%';
    if (!tps) $('mem-tps').textContent = '–';
    drawSpark();
    return;
  }
  const kept = Math.round(s.residentTokens / heads);
  // Parallel chains each hold a forked copy of the prompt, which tokensSeen does not count; the full-cache
  // count (peakTokensFull, summed over sequences) does, and equals tokensSeen x heads for one conversation.
  const seen = Math.max(s.tokensSeen, Math.round(s.peakTokensFull / heads));
  const ratio = s.residentTokens > 0 ? (seen * heads) / s.residentTokens : s.compression;
  $('mem-seen').textContent = formatCount(seen);
  $('mem-kept').textContent = formatCount(kept);
  $('mem-ratio').textContent = formatRatio(ratio);
  $('mem-ratio').classList.remove('empty');
  $('mem-ratio').title = `Peak compression ${formatRatio(s.compression)} (full-cache peak ${formatCount(s.peakTokensFull)} vs ${formatCount(s.peakTokens)} token-heads)`;
  $('mem-bytes').textContent = formatBytes(s.peakBytes);
  $('mem-alloc').textContent = formatBytes(s.allocatedBytes);
  $('mem-policy').textContent =
    s.policy.toUpperCase() + (s.kvDtype ? ` · K/V ${s.kvDtype}` : '') + (s.budgetEvictions ? ` · ${formatCount(s.budgetEvictions)} evictions` : '');
  if (tps > 0) $('mem-tps').textContent = `${tps.toFixed(tps >= 10 ? 0 : 1)} tok/s`;
  const max = Math.max(1, seen);
  $('mem-bar-ctx').style.width = '100%';
  $('mem-bar-kept').style.width = `${Math.min(100, (100 * kept) / max).toFixed(1)}%`;
  const lastPoint = kvHistory[kvHistory.length - 1];
  if (!lastPoint || lastPoint.seen !== seen || lastPoint.kept !== kept) {
    kvHistory.push({ seen, kept });
    if (kvHistory.length > 400) kvHistory = kvHistory.filter((_, i) => i % 2 === 0);
    drawSpark();
  }
}

/** Refreshes the resident-positions map; at most one readback in flight. */
let kvMapBusy = false;
async function refreshKvMap(): Promise<void> {
  if (kvMapBusy) return;
  kvMapBusy = true;
  try {
    const r = await client.kvResidency();
    const canvas = $('kv-map') as HTMLCanvasElement;
    drawKvMap(canvas, r);
    canvas.dataset.tokens = String(r?.tokens ?? 0);
    if (r && r.tokens > 0) canvas.setAttribute('aria-label', `${(100 * residentShare(r)).toFixed(0)}% of ${r.tokens} positions resident over ${r.layers} layers × ${r.kvHeads} KV heads`);
  } catch {
    // The map is informative only: a failed readback (e.g. during unload) leaves the last picture.
  } finally {
    kvMapBusy = false;
  }
}

function drawSpark(): void {
  const svg = $('mem-spark');
  if (kvHistory.length < 2) {
    svg.innerHTML = '';
    svg.dataset.empty = 'true';
    return;
  }
  delete svg.dataset.empty;
  const max = Math.max(...kvHistory.map((h) => h.seen), 1);
  const pts = (key: 'seen' | 'kept') => kvHistory.map((h, i) => `${((i / (kvHistory.length - 1)) * 200).toFixed(1)},${(58 - (h[key] / max) * 54).toFixed(1)}`).join(' ');
  svg.innerHTML = `<polyline class="ctx" points="${pts('seen')}" /><polyline class="kept" points="${pts('kept')}" />`;
}

/** "warm · 2.1 s · 373 MB read from this browser" / "cold · 41 s · 1.19 GB downloaded". */
function startLabel(l: NonNullable<ModelInfo['load']>): string {
  const bytes = l.start === 'warm' ? `${formatBytes(l.readBytes)} read from this browser` : `${formatBytes(l.downloadedBytes)} downloaded`;
  const time = l.ms < 60_000 ? `${(l.ms / 1000).toFixed(1)} s` : formatDuration(l.ms / 1000);
  return `${l.start} start · ${time} · ${bytes}`;
}

function renderModelGrid(): void {
  const g = $('model-grid');
  g.replaceChildren();
  if (!modelInfo) return;
  const i = modelInfo;
  const rows: [string, string][] = [
    ['Name', /^https?:/.test(i.name) ? specLabel(loadedSpec) : i.name],
    ['Architecture', i.architecture],
    ['Parameters', formatCount(i.parameters)],
    ['Weights', `${i.weights} · ${formatBytes(i.weightBytes)}`],
    ['Layers × KV heads', `${i.numLayers} × ${i.numKvHeads}`],
    ['DMS', i.dms ? `window ${i.dms.windowSize}${i.dms.cr ? ` · target ${i.dms.cr}×` : ''}` : 'no'],
    ['Max context', formatCount(i.maxContext)],
    ['Weights kept', i.stored === undefined ? '–' : !i.stored ? 'not stored' : i.load?.stored === 'quantized' ? `in this browser, ${i.load.weights} · ${formatBytes(i.load.storedBytes)}` : 'in this browser'],
    ['Last start', i.load ? startLabel(i.load) : '–'],
    ['GPU', i.adapter],
  ];
  for (const [k, v] of rows) {
    const d = document.createElement('div');
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v;
    dd.title = v;
    d.append(dt, dd);
    g.append(d);
  }
}

// ---------------------------------------------------------------- conversation list

async function renderConvList(): Promise<void> {
  const list = $('conv-list');
  let convs: Conversation[];
  try {
    convs = await listConversations();
  } catch {
    convs = [];
  }
  list.replaceChildren();
  if (convs.length === 0) {
    const p = document.createElement('p');
    p.className = 'muted small empty-list';
    p.textContent = 'Your conversations are kept in this browser.';
    list.append(p);
    return;
  }
  for (const c of convs) {
    const row = document.createElement('div');
    row.className = 'conv-row';
    if (c.id === conv.id) row.setAttribute('aria-current', 'true');
    const open = document.createElement('button');
    open.type = 'button';
    open.className = 'conv-open';
    const t = document.createElement('span');
    t.className = 'conv-title';
    t.textContent = c.title;
    const when = document.createElement('span');
    when.className = 'conv-when';
    when.textContent = relativeTime(c.updatedAt);
    open.append(t, when);
    open.addEventListener('click', () => void openConversation(c.id));
    const del = document.createElement('button');
    del.type = 'button';
    del.className = 'btn btn-icon conv-del';
    del.setAttribute('aria-label', `Delete conversation: ${c.title}`);
    del.innerHTML = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 7h16M10 11v6M14 11v6M6 7l1 13h10l1-13M9 7V4h6v3"/></svg>';
    del.addEventListener('click', async () => {
      if (!confirm(`Delete “${c.title}”?`)) return;
      await deleteConversation(c.id);
      if (c.id === conv.id) newConversation();
      void renderConvList();
    });
    row.append(open, del);
    list.append(row);
  }
}

async function openConversation(id: string): Promise<void> {
  await stopGeneration();
  const c = await loadConversation(id);
  if (!c) return;
  conv = c;
  kvHistory = [];
  renderLog();
  void renderConvList();
  closeSidebar();
}

function newConversation(): void {
  void stopGeneration();
  conv = blankConversation();
  kvHistory = [];
  renderLog();
  void renderConvList();
  closeSidebar();
  input.focus();
}
$('new-chat').addEventListener('click', newConversation);

// ---------------------------------------------------------------- the log

const SUGGESTIONS = ['Explain KV cache compression in two sentences.', 'Write a haiku about a GPU in a browser tab.', 'Give me three tips for writing clear commit messages.'];

function renderLog(): void {
  log.replaceChildren();
  if (conv.messages.length === 0) {
    const empty = document.createElement('div');
    empty.className = 'empty';
    empty.innerHTML = '<div class="empty-logo" aria-hidden="true"></div><h1>What can I help with?</h1><p class="muted">The model runs here, on your GPU. Its memory is compressed as it goes; watch it in the Memory panel.</p>';
    const chips = document.createElement('div');
    chips.className = 'chips';
    for (const s of SUGGESTIONS) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'chip';
      b.textContent = s;
      b.addEventListener('click', () => {
        input.value = s;
        autoGrow();
        input.focus();
        updateComposer();
      });
      chips.append(b);
    }
    empty.append(chips);
    log.append(empty);
    return;
  }
  for (const m of conv.messages) appendMessage(m, false);
  scrollToBottom(true);
}

function appendMessage(m: StoredMessage, streaming: boolean): HTMLElement {
  log.querySelector('.empty')?.remove();
  const el = document.createElement('article');
  el.className = `msg msg-${m.role}`;
  el.setAttribute('aria-label', m.role === 'user' ? 'You said' : 'Assistant said');
  const body = document.createElement('div');
  body.className = 'msg-body';
  const content = document.createElement('div');
  content.className = 'content';
  const meta = document.createElement('div');
  meta.className = 'msg-meta';
  body.append(content, meta);
  if (m.role === 'assistant') {
    const av = document.createElement('div');
    av.className = 'avatar';
    av.setAttribute('aria-hidden', 'true');
    el.append(av);
  }
  el.append(body);
  log.append(el);
  paintMessage(el, m, streaming);
  return el;
}

/** Paints a message into its element: user text as plain text, model text through renderMessage (sanitized). */
function paintMessage(el: HTMLElement, m: StoredMessage, streaming: boolean): void {
  const content = el.querySelector<HTMLElement>('.content')!;
  const meta = el.querySelector<HTMLElement>('.msg-meta')!;
  if (m.role === 'user') {
    content.textContent = m.content;
  } else {
    renderMessage(content, m.content, { streaming });
    el.classList.toggle('streaming', streaming);
    if (streaming && m.content === '') content.innerHTML = '<span class="typing" aria-label="Thinking"><i></i><i></i><i></i></span>';
    paintChains(el, m.chains, m.vote, streaming);
  }
  meta.replaceChildren();
  const bits: string[] = [];
  if (m.dropped) {
    const note = document.createElement('div');
    note.className = 'msg-notice';
    note.textContent = droppedText(m.dropped);
    meta.append(note);
  }
  if (m.error) {
    const err = document.createElement('div');
    err.className = 'msg-error';
    err.textContent = m.error;
    meta.append(err);
  }
  if (!streaming && m.role === 'assistant') {
    if (m.finishReason === 'abort') bits.push('Stopped');
    if (m.finishReason === 'length') bits.push('Reached max tokens');
    if (m.vote && m.chains) bits.push(voteLine(m.vote, m.chains.length));
    if (m.usage) {
      bits.push(`${m.usage.completionTokens} tokens`);
      if (m.usage.decodeTokensPerSecond > 0) bits.push(`${m.usage.decodeTokensPerSecond.toFixed(1)} tok/s`);
      if (m.usage.cachedTokens > 0) bits.push(`${m.usage.cachedTokens} cached prompt tokens reused`);
    }
  }
  if (bits.length) {
    const s = document.createElement('span');
    s.textContent = bits.join(' · ');
    meta.append(s);
  }
}

function scrollToBottom(force = false): void {
  const near = log.scrollHeight - log.scrollTop - log.clientHeight < 120;
  if (force || near) log.scrollTop = log.scrollHeight;
}

// ---------------------------------------------------------------- composer

function updateComposer(): void {
  const busy = generation !== null && !generation.stopped;
  sendBtn.hidden = busy;
  stopBtn.hidden = !busy;
  sendBtn.disabled = (modelState !== 'ready' && modelState !== 'lost') || input.value.trim() === '';
  const hint = $('composer-hint');
  hint.textContent = modelState === 'loading' ? 'Loading the model…' : modelState === 'error' ? 'No model loaded' : modelState === 'elsewhere' ? 'Model in use in another tab' : '';
}

function autoGrow(): void {
  input.style.height = 'auto';
  input.style.height = `${Math.min(input.scrollHeight, 240)}px`;
}

input.addEventListener('input', () => {
  autoGrow();
  updateComposer();
});
input.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    if (!sendBtn.disabled && !sendBtn.hidden) composer.requestSubmit();
  }
});
composer.addEventListener('submit', (e) => {
  e.preventDefault();
  void send();
});
stopBtn.addEventListener('click', () => void stopGeneration());
// Escape stops a running reply (unless a dialog is open: there it closes the dialog).
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && generation && !generation.stopped && !document.querySelector('dialog[open]')) void stopGeneration();
});

function requestMessages(): ChatMessage[] {
  const out: ChatMessage[] = [];
  if (settings.systemPrompt.trim()) out.push({ role: 'system', content: settings.systemPrompt.trim() });
  for (const m of conv.messages) {
    if (m.role === 'assistant' && (m.error || m.content === '')) continue;
    out.push({ role: m.role, content: m.content });
  }
  return out;
}

async function send(): Promise<void> {
  if (!input.value.trim()) return;
  if (modelState === 'lost') await loadModel(loadedSpec || currentSpec());
  const text = input.value.trim();
  if (!text || modelState !== 'ready') return;
  // A stopped reply may still be finishing its last token in the worker.
  if (generation) await generation.done;
  input.value = '';
  autoGrow();
  const user: StoredMessage = { role: 'user', content: text, at: Date.now() };
  if (conv.messages.length === 0) conv.title = titleFrom(text);
  conv.model = loadedSpec;
  conv.messages.push(user);
  appendMessage(user, false);
  const reply: StoredMessage = { role: 'assistant', content: '', at: Date.now() };
  const req: ChatRequest = {
    messages: requestMessages(),
    temperature: settings.temperature,
    topP: settings.topP,
    topK: settings.topK,
    maxTokens: settings.maxTokens,
    seed: urlSeed,
    chains: settings.chains > 1 ? settings.chains : undefined,
  };
  if (req.chains) reply.chains = Array.from({ length: req.chains }, () => ({ content: '' }));
  conv.messages.push(reply);
  const owner = conv;
  const el = appendMessage(reply, true);
  scrollToBottom(true);
  void saveConversation(conv).then(renderConvList, () => undefined);

  let deltas = 0;
  const gen: Generation = { msg: reply, el, stopped: false, done: Promise.resolve() };
  // Deltas are fire-and-forget callbacks from the worker: the last ones can arrive after chat() has
  // resolved. Once it has, they must not repaint the finished reply as streaming.
  let finished = false;
  const painter = streamPainter(() => {
    if (gen.stopped || finished) return;
    paintMessage(el, reply, true);
    scrollToBottom();
  });
  log.setAttribute('aria-busy', 'true');
  gen.done = (async () => {
    try {
      const res = await client.chat(req, (d) => {
        if (gen.stopped || finished) return;
        if (d.chain !== undefined && reply.chains?.[d.chain]) reply.chains[d.chain].content += d.content;
        else reply.content += d.content;
        updateMemory(d.kv, d.decodeTokensPerSecond);
        if (++deltas % 16 === 0) void refreshKvMap();
        painter.schedule();
      });
      reply.content = res.content;
      reply.finishReason = gen.stopped ? 'abort' : res.finishReason;
      if (res.chains) reply.chains = res.chains.map((c) => ({ content: c.content, answer: c.answer, finishReason: c.finishReason }));
      reply.vote = res.vote;
      reply.dropped = res.dropped;
      reply.usage = {
        promptTokens: res.promptTokens,
        cachedTokens: res.cachedTokens ?? 0,
        completionTokens: res.completionTokens,
        decodeTokensPerSecond: res.timing.decodeTokensPerSecond,
        prefillMs: res.timing.prefillMs,
      };
      updateMemory(res.kv, res.timing.decodeTokensPerSecond);
      void refreshKvMap();
    } catch (e) {
      reply.error = (e as Error)?.message ?? String(e);
      if (gen.stopped) reply.finishReason = 'abort';
    } finally {
      finished = true;
      painter.cancel();
      if (generation === gen) generation = null;
      if (el.isConnected) paintMessage(el, reply, false);
      log.removeAttribute('aria-busy');
      updateComposer();
      await saveConversation(owner).catch(() => undefined);
      void renderConvList();
    }
  })();
  generation = gen;
  updateComposer();
  await gen.done;
}

/** Stops the running reply at once (the UI stops now; the worker stops at its next token). */
async function stopGeneration(): Promise<void> {
  const gen = generation;
  if (!gen) return;
  if (!gen.stopped) {
    gen.stopped = true;
    client.abort();
    gen.el.classList.remove('streaming');
    gen.el.classList.add('stopping');
    updateComposer();
    input.focus();
  }
  await gen.done;
}

// ---------------------------------------------------------------- settings dialog

const settingsDialog = $<HTMLDialogElement>('settings-dialog');
const settingsForm = $<HTMLFormElement>('settings-form');
type FormField = HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement;
const field = (name: string): FormField => settingsForm.elements.namedItem(name) as FormField;
const NUMERIC: (keyof Settings)[] = ['temperature', 'topP', 'topK', 'maxTokens', 'kvBudget', 'maxContext'];

function fillSettings(): void {
  for (const k of NUMERIC) field(k).value = String(settings[k]);
  field('kv').value = settings.kv;
  field('weights').value = settings.weights;
  field('systemPrompt').value = settings.systemPrompt;
  field('chains').value = String(settings.chains);
  syncOutputs();
}
function syncOutputs(): void {
  $('out-temperature').textContent = Number(field('temperature').value).toFixed(2);
  $('out-topP').textContent = Number(field('topP').value).toFixed(2);
}
settingsForm.addEventListener('input', syncOutputs);
$('open-settings').addEventListener('click', () => {
  fillSettings();
  settingsDialog.showModal();
});
settingsDialog.addEventListener('close', () => {
  const action = settingsDialog.returnValue;
  if (action !== 'save' && action !== 'reload') return;
  const before = JSON.stringify([settings.kv, settings.kvBudget, settings.maxContext, settings.weights, settings.chains]);
  for (const k of NUMERIC) {
    const v = Number(field(k).value);
    if (Number.isFinite(v)) (settings as unknown as Record<string, number>)[k] = v;
  }
  settings.maxTokens = Math.max(1, Math.round(settings.maxTokens));
  settings.topK = Math.max(0, Math.round(settings.topK));
  settings.kv = field('kv').value as Settings['kv'];
  settings.weights = field('weights').value as Settings['weights'];
  settings.systemPrompt = field('systemPrompt').value;
  settings.chains = Math.max(1, Math.round(Number(field('chains').value) || 1));
  saveSettings(settings);
  // More chains need more KV sequences: the engine is reloaded for them.
  const after = JSON.stringify([settings.kv, settings.kvBudget, settings.maxContext, settings.weights, settings.chains]);
  if (action === 'reload' || (before !== after && modelState === 'ready')) void loadModel(loadedSpec || currentSpec());
});

// ---------------------------------------------------------------- model dialog

const modelDialog = $<HTMLDialogElement>('model-dialog');
const modelForm = $<HTMLFormElement>('model-form');
const specInput = $<HTMLInputElement>('model-spec');

function openModelDialog(): void {
  const spec = currentSpec();
  const isDefault = spec === 'default' || spec === '';
  (modelForm.elements.namedItem('source') as RadioNodeList).value = isDefault ? 'default' : 'custom';
  specInput.value = isDefault ? '' : spec;
  const dl = $('recent-models');
  dl.replaceChildren(
    ...settings.recentModels.map((m) => {
      const o = document.createElement('option');
      o.value = m;
      return o;
    }),
  );
  $('model-note').textContent = modelInfo ? `Loaded now: ${specLabel(loadedSpec)} (${formatBytes(modelInfo.weightBytes)} of weights on the GPU).` : '';
  void renderStored();
  void renderPresets();
  modelDialog.showModal();
}

/** This GPU's buffer limits, for the presets' fit (the worker runs the same pre-flight before loading). */
let adapterLimits: Promise<{ maxBufferSize: number; maxStorageBufferBindingSize: number } | null> | null = null;
function gpuLimits() {
  adapterLimits ??= (async () => {
    const a = await navigator.gpu?.requestAdapter().catch(() => null);
    return a ? { maxBufferSize: a.limits.maxBufferSize, maxStorageBufferBindingSize: a.limits.maxStorageBufferBindingSize } : null;
  })();
  return adapterLimits;
}

/** Presets: real models with their sizes and whether they fit this GPU; a click picks one. */
async function renderPresets(): Promise<void> {
  const box = $('model-presets');
  const limits = await gpuLimits();
  box.replaceChildren(
    ...modelPresets().map((p) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'preset';
      const left = document.createElement('span');
      const name = document.createElement('strong');
      name.textContent = p.label;
      const sub = document.createElement('small');
      sub.textContent = ` ${formatCount(p.parameters)} params · ${formatBytes(p.sizes.q4.downloadBytes)} at q4 · needs ${formatBytes(p.gpuMemory)}`;
      left.append(name, sub);
      const fit = document.createElement('small');
      if (limits) {
        const f = presetFit(p, limits);
        fit.className = f.ok ? 'fit-yes' : 'fit-no';
        fit.textContent = f.ok ? `fits (${f.report.format})` : 'too big here';
        if (!f.ok) b.title = f.error.message;
      }
      b.append(left, fit);
      b.addEventListener('click', () => {
        specInput.value = p.id;
        (modelForm.elements.namedItem('source') as RadioNodeList).value = 'custom';
      });
      return b;
    }),
  );
}

/** The models kept in this browser's storage, each with a delete button. */
async function renderStored(): Promise<void> {
  const box = $('stored-models');
  let list: Awaited<ReturnType<typeof client.listStored>> = [];
  try {
    list = await client.listStored();
  } catch {
    list = [];
  }
  box.replaceChildren();
  $('stored-section').hidden = list.length === 0;
  for (const m of list) {
    const row = document.createElement('div');
    row.className = 'stored-row';
    const label = document.createElement('div');
    label.className = 'stored-label';
    const name = document.createElement('strong');
    name.textContent = m.name === 'default' ? 'Embedded model' : specLabel(m.name);
    name.title = m.id;
    const size = document.createElement('small');
    size.textContent = (m.complete ? formatBytes(m.bytes) : `${formatBytes(m.storedBytes)} of ${formatBytes(m.bytes)} (unfinished)`) + (m.weights ? ` · ${m.weights} copy` : '');
    label.append(name, size);
    const del = document.createElement('button');
    del.type = 'button';
    del.className = 'btn btn-ghost';
    del.textContent = 'Delete';
    del.setAttribute('aria-label', `Delete stored model ${name.textContent}`);
    del.addEventListener('click', async () => {
      del.disabled = true;
      await client.deleteStored(m.id).catch(() => undefined);
      void renderStored();
    });
    row.append(label, del);
    box.append(row);
  }
}
$('model-chip').addEventListener('click', openModelDialog);
specInput.addEventListener('input', () => {
  (modelForm.elements.namedItem('source') as RadioNodeList).value = 'custom';
});
modelDialog.addEventListener('close', () => {
  if (modelDialog.returnValue !== 'load') return;
  const source = (modelForm.elements.namedItem('source') as RadioNodeList).value;
  const spec = source === 'default' ? 'default' : specInput.value.trim();
  if (!spec) return;
  settings.model = spec;
  if (spec !== 'default') settings.recentModels = [spec, ...settings.recentModels.filter((m) => m !== spec)].slice(0, 8);
  saveSettings(settings);
  if (urlModel !== null) {
    // The page was opened for a given model; drop the override so the choice sticks.
    const u = new URL(location.href);
    u.searchParams.delete('model');
    replaceUrl(u);
  }
  void loadModel(spec);
});
function replaceUrl(u: URL): void {
  window.history.replaceState(null, '', u);
}

// ---------------------------------------------------------------- layout toggles

function closeSidebar(): void {
  document.body.classList.remove('sidebar-open');
  $('toggle-sidebar').setAttribute('aria-expanded', 'false');
}
$('toggle-sidebar').addEventListener('click', () => {
  const open = document.body.classList.toggle('sidebar-open');
  $('toggle-sidebar').setAttribute('aria-expanded', String(open));
});
// Wide screens show the memory panel unless hidden; narrow ones show it as an overlay when opened.
const narrow = window.matchMedia('(max-width: 1100px)');
const memoryShown = () => (narrow.matches ? document.body.classList.contains('memory-open') : !document.body.classList.contains('memory-hidden'));
const syncMemoryToggle = () => $('toggle-memory').setAttribute('aria-expanded', String(memoryShown()));
$('toggle-memory').addEventListener('click', () => {
  document.body.classList.toggle(narrow.matches ? 'memory-open' : 'memory-hidden');
  syncMemoryToggle();
});
$('close-memory').addEventListener('click', () => {
  document.body.classList.remove('memory-open');
  syncMemoryToggle();
});
narrow.addEventListener('change', syncMemoryToggle);
syncMemoryToggle();

// ---------------------------------------------------------------- start

watchForUpdates(() =>
  showBanner('update', 'info', 'A new version of WebDMS is ready', 'Reload to use it. Your conversations and stored models are kept.', [
    { label: 'Reload', primary: true, run: () => location.reload() },
  ]),
);
applyTheme();
renderLog();
updateComposer();
updateModelChip();
void renderConvList();
void startModel();

/** Loads the model at start: a linked one only with the user's consent, else the saved choice. */
async function startModel(): Promise<void> {
  if (urlModel !== null && specForWorker(urlModel) !== specForWorker(settings.model)) {
    const base = specForWorker(urlModel);
    if (!(await askToLoadModel(base, client.describeModel(base)))) {
      urlModel = null;
      const u = new URL(location.href);
      u.searchParams.delete('model');
      replaceUrl(u);
    }
  }
  await loadModel(currentSpec());
}

/** For tests and debugging: the defaults, the state, and the client. */
Object.assign(window, {
  __webdms: {
    get state() {
      return { modelState, modelInfo, lastKv, conversationId: conv.id, generating: generation !== null };
    },
    defaults: DEFAULT_SETTINGS,
  },
});
