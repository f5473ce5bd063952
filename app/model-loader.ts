/**
 * Loading the model: WebGPU and the one-tab lock first, then the worker loads it with the settings' engine
 * options while the progress shows, and the page follows it to ready, failed, lost with the GPU device, or
 * moved to another tab. At start, a model that a link names loads only once the user agrees.
 */
import * as banners from './banners';
import { input, stopGeneration } from './composer';
import { renderLog } from './conversation-log';
import { hideProgress, showProgress } from './load-progress';
import { renderModelGrid, updateMemory } from './memory-panel';
import { setModelState, updateModelChip } from './model-chip';
import { askToLoadModel } from './model-consent';
import { openModelDialog } from './model-dialog';
import { specForWorker, specLabel } from './model-spec';
import { client, currentSpec, lock, removeModelParam, settings, state } from './state';
import { saveSettings } from './store';
import type { LoadRequest } from '../worker/protocol';

let persistAsked = false;

export interface LoadOptions {
  steal?: boolean;
  wait?: boolean;
  memoryFallback?: boolean;
  /** The user chose this model: save it as the choice, but only once it has loaded. */
  save?: boolean;
}

/** The model choice is saved only once the model loaded, so a choice that fails is not tried again on the next visit. */
function saveChoice(spec: string): void {
  settings.model = spec;
  if (spec !== 'default') settings.recentModels = [spec, ...settings.recentModels.filter((m) => m !== spec)].slice(0, 8);
  saveSettings(settings);
  // The page was opened for a given model; drop the override from the address so the choice sticks.
  if (state.urlModel !== null) {
    state.urlModel = null;
    removeModelParam();
  }
}

export async function loadModel(spec: string, opts: LoadOptions = {}): Promise<void> {
  if (!('gpu' in navigator) || !navigator.gpu) {
    setModelState('error');
    updateModelChip();
    banners.noWebGpu();
    return;
  }
  // The model in use now: it stays loaded (and is used again) if this load fails.
  const previous = state.modelState === 'ready' && state.modelInfo ? { spec: state.loadedSpec, info: state.modelInfo } : null;
  state.loadedSpec = spec;
  banners.clear('load');
  banners.clear('lock');
  banners.clear('gpu');
  if (!lock.held) {
    let ok: boolean;
    if (opts.steal || opts.wait) {
      if (opts.wait) {
        setModelState('loading');
        updateModelChip();
        banners.waitingForTab();
      }
      ok = await lock.acquire(!!opts.steal);
      banners.clear('lock');
    } else {
      ok = await lock.tryAcquire();
    }
    if (!ok) {
      setModelState('elsewhere');
      updateModelChip();
      banners.tabBusy(
        () => void loadModel(spec, { ...opts, steal: true }),
        () => void loadModel(spec, { ...opts, wait: true }),
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
  state.modelInfo = null;
  setModelState('loading');
  updateModelChip();
  showProgress({ phase: 'fetch', loadedBytes: 0, totalBytes: 0 });
  const req: LoadRequest = {
    model: specForWorker(spec),
    kv: settings.kv === 'auto' ? undefined : settings.kv,
    kvBudget: settings.kvBudget > 0 ? settings.kvBudget : undefined,
    kvDtype: settings.kvDtype,
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
        if (state.loadedSpec === spec && !finished && p.phase !== 'ready') showProgress(p);
      },
      (message) => {
        if (state.loadedSpec !== spec || state.modelInfo !== info) return;
        state.modelInfo = null;
        setModelState('lost');
        updateModelChip();
        banners.gpuReset(message, () => void loadModel(spec));
      },
    ).finally(() => (finished = true));
    if (state.loadedSpec !== spec) return;
    state.modelInfo = info;
    setModelState('ready');
    if (opts.save) saveChoice(spec);
    state.lastKv = null;
    state.kvHistory = [];
    renderModelGrid();
    updateMemory(null, 0);
    // The empty conversation's suggestions and notes depend on the model.
    if (state.conv.messages.length === 0) renderLog();
    if (info.storageWarning) banners.storageWarning(info.stored, info.storageWarning);
    input.focus();
    console.info(`[webdms] model ready in ${((performance.now() - started) / 1000).toFixed(1)} s`, info);
  } catch (e) {
    if (state.loadedSpec !== spec) return;
    const msg = loadErrorText((e as Error)?.message ?? String(e));
    // The worker keeps the model it had until a new one is ready: go on with it.
    const kept = previous ? await client.current().catch(() => null) : null;
    if (state.loadedSpec !== spec) return;
    if (previous && kept) {
      state.loadedSpec = previous.spec;
      state.modelInfo = kept;
      setModelState('ready');
      if (state.conv.messages.length === 0) renderLog();
      banners.loadFailed(`${msg} Still using ${specLabel(previous.spec)}.`, () => void loadModel(spec, opts), openModelDialog, null);
      return;
    }
    setModelState('error');
    lock.releaseLock();
    const fallback = spec !== 'default' ? () => void loadModel(previous?.spec ?? 'default') : null;
    if ((e as Error)?.name === 'StorageQuotaError' || (e as Error)?.name === 'QuotaExceededError') {
      banners.noStorage(msg, () => void loadModel(spec, { ...opts, memoryFallback: true }), openModelDialog);
    } else {
      banners.loadFailed(msg, () => void loadModel(spec, opts), openModelDialog, fallback && { label: previous ? `Load ${specLabel(previous.spec)} again` : 'Use the offline demo model', run: fallback });
    }
  } finally {
    if (state.loadedSpec === spec) hideProgress();
    updateModelChip();
  }
}

/** The page, too, knows when the browser is offline: say that first, whatever the worker could tell. */
function loadErrorText(message: string): string {
  if (navigator.onLine === false && !/^You are offline/.test(message)) return `You are offline. ${message}`;
  return message;
}

/** Another tab took the model over (the lock was stolen): this tab lets its copy go and offers to take it back. */
export function letModelGo(): void {
  client.terminate();
  void stopGeneration();
  state.modelInfo = null;
  setModelState('elsewhere');
  updateModelChip();
  banners.modelMoved(() => void loadModel(state.loadedSpec || currentSpec(), { steal: true }));
}

/** Loads the model at start: a linked one only with the user's consent, else the saved choice. */
export async function startModel(): Promise<void> {
  if (state.urlModel !== null && specForWorker(state.urlModel) !== specForWorker(settings.model)) {
    const base = specForWorker(state.urlModel);
    if (!(await askToLoadModel(base, client.describeModel(base)))) {
      state.urlModel = null;
      removeModelParam();
    }
  }
  await loadModel(currentSpec());
}
