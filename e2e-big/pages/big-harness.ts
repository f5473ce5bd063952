/**
 * The real-size e2e harness page: the app's own client (app/engine-client.ts) starts the real model
 * worker (worker/worker.ts, weight store and engine), and this page puts a few calls on
 * window.bigHarness that return plain objects with page-side timings, so the spec can time each phase.
 */
import { EngineClient } from '../../app/engine-client';
import { requestPersistentStorage } from '../../worker/store/backend';
import type { ChatRequest, ChatResult, LoadRequest, ModelInfo, StoredModelInfo } from '../../worker/protocol';

export interface ProgressEvent {
  phase: string;
  /** ms since the load request. */
  t: number;
  file?: string;
  loadedBytes: number;
  totalBytes: number;
}

export type Outcome<T> = ({ ok: true } & T) | { ok: false; error: { name: string; message: string } };

export type LoadOutcome = Outcome<{ info: ModelInfo; ms: number; progress: ProgressEvent[] }>;
export type ChatOutcome = Outcome<{ result: ChatResult; ids: number[]; ms: number; firstTokenMs: number | null }>;

const client = new EngineClient();

const fail = (e: unknown) => ({ ok: false as const, error: { name: (e as Error)?.name ?? 'Error', message: (e as Error)?.message ?? String(e) } });

const harness = {
  /** persist() exists only in windows: the page asks, as the app does before a download. */
  persist: () => requestPersistentStorage(),
  async load(req: LoadRequest): Promise<LoadOutcome> {
    const progress: ProgressEvent[] = [];
    const t0 = performance.now();
    try {
      const info = await client.load(req, (p) => {
        progress.push({ phase: p.phase, t: Math.round(performance.now() - t0), file: p.file, loadedBytes: p.loadedBytes, totalBytes: p.totalBytes });
      });
      return { ok: true, info, ms: Math.round(performance.now() - t0), progress };
    } catch (e) {
      return fail(e);
    }
  },
  async chat(req: ChatRequest): Promise<ChatOutcome> {
    const ids: number[] = [];
    const t0 = performance.now();
    let firstTokenMs: number | null = null;
    try {
      const result = await client.chat(req, (d) => {
        if (d.tokenIds.length && firstTokenMs === null) firstTokenMs = Math.round(performance.now() - t0);
        ids.push(...d.tokenIds);
      });
      const ms = Math.round(performance.now() - t0);
      // Deltas come through their own Comlink channel and may arrive after the result: wait for all of them.
      const expected = result.completionTokens + (result.finishReason === 'stop' ? 1 : 0);
      for (let waited = 0; ids.length < expected && waited < 10_000; waited += 20) await new Promise((r) => setTimeout(r, 20));
      return { ok: true, result, ids, ms, firstTokenMs };
    } catch (e) {
      return fail(e);
    }
  },
  listStored: (): Promise<StoredModelInfo[]> => client.listStored(),
  estimate: async () => {
    const e = (await navigator.storage.estimate()) as StorageEstimate & { usageDetails?: Record<string, number> };
    return { usage: e.usage ?? 0, quota: e.quota ?? 0, indexedDB: e.usageDetails?.indexedDB ?? null };
  },
};

export type BigHarness = typeof harness;
(window as unknown as { bigHarness: BigHarness }).bigHarness = harness;
document.getElementById('status')!.textContent = 'ready';
