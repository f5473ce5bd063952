/** The e2e harness page: starts the store worker and puts its API on window.storeHarness. */
import * as Comlink from 'comlink';
import { requestPersistentStorage } from '../../worker/store/backend';
import type { StoreWorkerApi } from './store-worker';

const worker = Comlink.wrap<StoreWorkerApi>(new Worker(new URL('./store-worker.ts', import.meta.url), { type: 'module' }));

const harness = {
  worker,
  /** persist() exists only in windows, so the page asks for it, as the app should before a download. */
  persist: () => requestPersistentStorage(),
};

(window as unknown as { storeHarness: typeof harness }).storeHarness = harness;
void worker.isWorker().then(() => {
  document.getElementById('status')!.textContent = 'ready';
});
