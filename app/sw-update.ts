/**
 * New versions of the app. The service worker (vite.config.ts) skips waiting and claims open tabs, so a
 * new deploy takes over as soon as the browser finds it (on a navigation, or the hourly check here); the
 * tab that is still running the old version is told, and offers a reload into the new one.
 */
const CHECK_EVERY_MS = 60 * 60 * 1000;

declare global {
  interface Window {
    /**
     * Set by index.html's first script: whether a service worker controlled the page when it started, and
     * how many times the controller changed since. The browser looks for a new worker as the page loads,
     * and one that installs fast takes over before this module runs, its `controllerchange` already past.
     */
    __swTakeovers?: { controlled: boolean; changes: number };
  }
}

export function watchForUpdates(onUpdate: () => void): void {
  const sw = navigator.serviceWorker;
  if (!sw) return;
  // The first install also claims the page: that is not an update.
  const early = window.__swTakeovers ?? { controlled: !!sw.controller, changes: 0 };
  let controlled = early.controlled || early.changes > 0;
  if (early.changes > (early.controlled ? 0 : 1)) onUpdate();
  sw.addEventListener('controllerchange', () => {
    if (controlled) onUpdate();
    controlled = true;
  });
  setInterval(() => void sw.getRegistration().then((r) => r?.update()).catch(() => undefined), CHECK_EVERY_MS);
}
