/**
 * The page's side of the worker: creates the module worker, wraps it with Comlink, turns a worker that
 * failed to start into an error instead of a call that never returns, and holds the one-engine-per-browser
 * Web Lock so a second tab does not silently load a second copy of the model.
 */
import * as Comlink from 'comlink';
import type { ChatDelta, ChatRequest, ChatResult, KvResidency, KvStats, LoadProgress, LoadRequest, ModelInfo, ModelOrigin, StoredModelInfo, WorkerApi } from '../worker/protocol';

export type WorkerFactory = () => Worker;

const defaultFactory: WorkerFactory = () => new Worker(new URL('../worker/worker.ts', import.meta.url), { type: 'module', name: 'webdms-model' });

export class EngineClient {
  private worker: Worker | null = null;
  private api: Comlink.Remote<WorkerApi> | null = null;
  private dead: Promise<never> | null = null;
  private answered = false;

  constructor(private readonly factory: WorkerFactory = defaultFactory) {}

  private start(): Comlink.Remote<WorkerApi> {
    if (this.api) return this.api;
    const w = this.factory();
    this.worker = w;
    this.answered = false;
    this.dead = new Promise<never>((_, reject) => {
      w.addEventListener('error', (e: ErrorEvent) => {
        // Before its first answer, an error event means the worker script did not load or threw at startup.
        if (!this.answered) {
          e.preventDefault();
          reject(new Error(`The model worker failed to start${e.message ? `: ${e.message}` : ' (its script could not be loaded or threw while starting)'}. Reload the page to try again.`));
          this.terminate();
        }
      });
      w.addEventListener('messageerror', () => reject(new Error('The model worker sent a message that could not be read.')));
    });
    this.dead.catch(() => undefined);
    this.api = Comlink.wrap<WorkerApi>(w);
    return this.api;
  }

  private async call<T>(p: Promise<T>): Promise<T> {
    const v = await Promise.race([p, this.dead!]);
    this.answered = true;
    return v;
  }

  load(req: LoadRequest, onProgress: (p: LoadProgress) => void, onDeviceLost: (message: string) => void = () => undefined): Promise<ModelInfo> {
    const api = this.start();
    return this.call(api.load(req, Comlink.proxy(onProgress), Comlink.proxy(onDeviceLost)));
  }

  chat(req: ChatRequest, onDelta: (d: ChatDelta) => void): Promise<ChatResult> {
    if (!this.api) return Promise.reject(new Error('No model is loaded.'));
    return this.call(this.api.chat(req, Comlink.proxy(onDelta)));
  }

  /** The model the worker holds now (after a failed load: the one it kept), or null. */
  async current(): Promise<ModelInfo | null> {
    return this.api ? this.call(this.api.current()) : null;
  }

  abort(): void {
    void this.api?.abort().catch(() => undefined);
  }

  async kvStats(): Promise<KvStats | null> {
    return this.api ? this.call(this.api.kvStats()) : null;
  }

  async kvResidency(): Promise<KvResidency | null> {
    return this.api ? this.call(this.api.kvResidency()) : null;
  }

  /** Models kept in the browser's storage (starts the worker if needed; loads no model). */
  listStored(): Promise<StoredModelInfo[]> {
    return this.call(this.start().listStored());
  }

  deleteStored(id: string): Promise<void> {
    return this.call(this.start().deleteStored(id));
  }

  /** Where a model spec points and its size (starts the worker if needed; loads and stores nothing). */
  describeModel(model: string): Promise<ModelOrigin> {
    return this.call(this.start().describeModel(model));
  }

  /** Unloads the model and ends the worker (its GPU memory goes with it). */
  terminate(): void {
    const w = this.worker;
    const api = this.api;
    this.worker = null;
    this.api = null;
    if (api) void api.unload().catch(() => undefined);
    if (w) setTimeout(() => w.terminate(), 50);
  }
}

/** One model per browser profile: a Web Lock held while this tab has a model loaded. */
export class TabLock {
  static readonly NAME = 'webdms-engine';
  private release: (() => void) | null = null;
  /** Called when another tab took the lock over (steal). */
  onLost: () => void = () => undefined;

  static get supported(): boolean {
    return typeof navigator !== 'undefined' && !!navigator.locks;
  }

  get held(): boolean {
    return this.release !== null || !TabLock.supported;
  }

  /** Takes the lock if no other tab holds it; resolves false when one does. */
  tryAcquire(): Promise<boolean> {
    if (!TabLock.supported) return Promise.resolve(true);
    return this.request({ ifAvailable: true });
  }

  /** Waits until the other tab lets go (`steal: false`) or takes the lock from it at once (`steal: true`). */
  acquire(steal: boolean): Promise<boolean> {
    if (!TabLock.supported) return Promise.resolve(true);
    return this.request(steal ? { steal: true } : {});
  }

  /** Tells whether another tab holds the lock now. */
  static async heldElsewhere(): Promise<boolean> {
    if (!TabLock.supported) return false;
    const q = await navigator.locks.query();
    return (q.held ?? []).some((l) => l.name === TabLock.NAME);
  }

  releaseLock(): void {
    this.release?.();
    this.release = null;
  }

  private request(opts: LockOptions): Promise<boolean> {
    if (this.release) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      navigator.locks
        .request(TabLock.NAME, { mode: 'exclusive', ...opts }, async (lock) => {
          if (!lock) {
            resolve(false);
            return;
          }
          await new Promise<void>((r) => {
            this.release = r;
            resolve(true);
          });
        })
        .catch((e: unknown) => {
          // Our lock was stolen by another tab.
          const wasHeld = this.release !== null;
          this.release = null;
          if (wasHeld && (e as Error)?.name === 'AbortError') this.onLost();
          resolve(false);
        });
    });
  }
}
