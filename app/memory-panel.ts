/**
 * The memory panel: the KV cache while replies stream (tokens in context and kept, compression, bytes,
 * decode speed, and their history over this conversation), the map of resident positions (app/kv-map.ts),
 * and what the loaded model is. Beside the chat on wide screens, an overlay on narrow ones.
 */
import { $ } from './dom';
import { formatBytes, formatCount, formatDuration, formatRatio, formatSeconds } from './format';
import { drawKvMap, residentShare } from './kv-map';
import { modelDisplayName } from './model-spec';
import { client, state } from './state';
import { prefillTokensPerSecond, type MessageUsage } from './store';
import type { KvStats, ModelInfo } from '../worker/protocol';

/** Shows `kv` (or, without it, the last statistics) and the decode speed `tps` when it is known. */
export function updateMemory(kv: KvStats | null, tps: number): void {
  if (kv) state.lastKv = kv;
  const s = state.lastKv;
  const heads = state.modelInfo ? Math.max(1, state.modelInfo.numLayers * state.modelInfo.numKvHeads) : 1;
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
    s.policy.toUpperCase() + (s.kvDtype ? ` · K/V ${s.kvDtype}${s.bytesPerToken ? ` (${s.bytesPerToken} B per token and head)` : ''}` : '') + (s.budgetEvictions ? ` · ${formatCount(s.budgetEvictions)} evictions` : '');
  if (tps > 0) $('mem-tps').textContent = `${tps.toFixed(tps >= 10 ? 0 : 1)} tok/s`;
  const max = Math.max(1, seen);
  $('mem-bar-ctx').style.width = '100%';
  $('mem-bar-kept').style.width = `${Math.min(100, (100 * kept) / max).toFixed(1)}%`;
  const lastPoint = state.kvHistory[state.kvHistory.length - 1];
  if (!lastPoint || lastPoint.seen !== seen || lastPoint.kept !== kept) {
    state.kvHistory.push({ seen, kept });
    if (state.kvHistory.length > 400) state.kvHistory = state.kvHistory.filter((_, i) => i % 2 === 0);
    drawSpark();
  }
}

/** The last reply's time to first token and prefill speed (decode speed is updated as it streams). */
export function updateSpeed(u: MessageUsage | null): void {
  if (!u) {
    $('mem-ttft').textContent = '–';
    $('mem-prefill').textContent = '–';
    return;
  }
  $('mem-ttft').textContent = u.ttftMs !== undefined ? formatSeconds(u.ttftMs) : '–';
  const p = prefillTokensPerSecond(u);
  $('mem-prefill').textContent = p !== null ? `${p.toFixed(p >= 10 ? 0 : 1)} tok/s` : u.cachedTokens > 0 ? 'cached' : '–';
}

/** Refreshes the resident-positions map; at most one readback in flight. */
let kvMapBusy = false;
export async function refreshKvMap(): Promise<void> {
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
  const history = state.kvHistory;
  if (history.length < 2) {
    svg.innerHTML = '';
    svg.dataset.empty = 'true';
    return;
  }
  delete svg.dataset.empty;
  const max = Math.max(...history.map((h) => h.seen), 1);
  const pts = (key: 'seen' | 'kept') => history.map((h, i) => `${((i / (history.length - 1)) * 200).toFixed(1)},${(58 - (h[key] / max) * 54).toFixed(1)}`).join(' ');
  svg.innerHTML = `<polyline class="ctx" points="${pts('seen')}" /><polyline class="kept" points="${pts('kept')}" />`;
}

/** "warm · 2.1 s · 373 MB read from this browser" / "cold · 41 s · 1.19 GB downloaded". */
function startLabel(l: NonNullable<ModelInfo['load']>): string {
  const bytes = l.start === 'warm' ? `${formatBytes(l.readBytes)} read from this browser` : `${formatBytes(l.downloadedBytes)} downloaded`;
  const time = l.ms < 60_000 ? `${(l.ms / 1000).toFixed(1)} s` : formatDuration(l.ms / 1000);
  return `${l.start} start · ${time} · ${bytes}`;
}

/** The panel's "Model" section: what the loaded model is and how it started. */
export function renderModelGrid(): void {
  const g = $('model-grid');
  g.replaceChildren();
  if (!state.modelInfo) return;
  const i = state.modelInfo;
  const rows: [string, string][] = [
    ['Name', modelDisplayName(state.loadedSpec, i.name)],
    ['Architecture', i.architecture],
    ['Parameters', formatCount(i.parameters)],
    ['Weights', `${i.weights} · ${formatBytes(i.weightBytes)}`],
    ['Layers × KV heads', `${i.numLayers} × ${i.numKvHeads}`],
    ['DMS', i.dms ? `window ${i.dms.windowSize}${i.dms.cr ? ` · target ${i.dms.cr}×` : ''}${i.dms.rule === 'fastdms' ? ' · FastDMS rule (dms_metadata.json)' : ''}` : 'no'],
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

/** The Memory button and the panel's close button: wide screens show the panel unless hidden; narrow ones show it as an overlay when opened. */
export function initMemoryPanel(): void {
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
}
