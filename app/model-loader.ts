/**
 * Loading the model: WebGPU and the one-tab lock first, then the worker loads it with the settings' engine
 * options while the progress shows, and the page follows it to ready, failed, lost with the GPU device, or
 * moved to another tab. At start, a model that a link names loads only once the user agrees.
 */
import * as banners from './banners';
import { input, stopGeneration } from './composer';
import { hideProgress, showProgress } from './load-progress';
import { renderModelGrid, updateMemory } from './memory-panel';
import { setModelState, updateModelChip } from './model-chip';
import { askToLoadModel } from './model-consent';
import { openModelDialog } from './model-dialog';
import { specForWorker } from './model-spec';
import { client, currentSpec, lock, removeModelParam, settings, state } from './state';
import type { LoadRequest } from '../worker/protocol';

let persistAsked = false;

export async function loadModel(spec: string, opts: { steal?: boolean; wait?: boolean; memoryFallback?: boolean } = {}): Promise<void> {
  if (!('gpu' in navigator) || !navigator.gpu) {
    setModelState('error');
    updateModelChip();
    banners.noWebGpu();
    return;
  }
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
        () => void loadModel(spec, { steal: true }),
        () => void loadModel(spec, { wait: true }),
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
    state.lastKv = null;
    state.kvHistory = [];
    renderModelGrid();
    updateMemory(null, 0);
    if (info.storageWarning) banners.storageWarning(info.stored, info.storageWarning);
    input.focus();
    console.info(`[webdms] model ready in ${((performance.now() - started) / 1000).toFixed(1)} s`, info);
  } catch (e) {
    if (state.loadedSpec !== spec) return;
    const msg = (e as Error)?.message ?? String(e);
    setModelState('error');
    lock.releaseLock();
    if ((e as Error)?.name === 'StorageQuotaError' || (e as Error)?.name === 'QuotaExceededError') {
      banners.noStorage(msg, () => void loadModel(spec, { memoryFallback: true }), openModelDialog);
    } else {
      banners.loadFailed(msg, () => void loadModel(spec), openModelDialog);
    }
  } finally {
    if (state.loadedSpec === spec) hideProgress();
    updateModelChip();
  }
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
