/**
 * New versions of the app. The service worker (vite.config.ts) skips waiting and claims open tabs, so a
 * new deploy takes over as soon as the browser finds it (on a navigation, or the hourly check here); the
 * tab that is still running the old version is told, and offers a reload into the new one.
 */
const CHECK_EVERY_MS = 60 * 60 * 1000;

export function watchForUpdates(onUpdate: () => void): void {
  const sw = navigator.serviceWorker;
  if (!sw) return;
  // The first install also claims the page: that is not an update.
  let controlled = !!sw.controller;
  sw.addEventListener('controllerchange', () => {
    if (controlled) onUpdate();
    controlled = true;
  });
  setInterval(() => void sw.getRegistration().then((r) => r?.update()).catch(() => undefined), CHECK_EVERY_MS);
}
