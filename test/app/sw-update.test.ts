/**
 * app/sw-update.ts: which service-worker takeovers are a new version. index.html counts them from the start
 * of the page, so one that happened before the app's module ran (a fast install on the reload) is not missed.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { watchForUpdates } from '../../app/sw-update';

class FakeContainer extends EventTarget {
  constructor(public controller: object | null) {
    super();
  }
  getRegistration() {
    return Promise.resolve(undefined);
  }
}

function page(controlled: boolean, early?: { controlled: boolean; changes: number }) {
  const sw = new FakeContainer(controlled ? {} : null);
  vi.stubGlobal('navigator', { serviceWorker: sw });
  vi.stubGlobal('window', { __swTakeovers: early });
  const onUpdate = vi.fn();
  watchForUpdates(onUpdate);
  return { sw, onUpdate };
}

describe('watchForUpdates', () => {
  beforeEach(() => vi.useFakeTimers()); // its hourly check
  afterEach(() => {
    vi.unstubAllGlobals();
    vi.useRealTimers();
  });

  it('the first install claiming the page is not an update; a later takeover is', () => {
    const { sw, onUpdate } = page(false, { controlled: false, changes: 0 });
    sw.dispatchEvent(new Event('controllerchange'));
    expect(onUpdate).not.toHaveBeenCalled();
    sw.dispatchEvent(new Event('controllerchange'));
    expect(onUpdate).toHaveBeenCalledTimes(1);
  });

  it('a takeover of a controlled page before the module ran is an update', () => {
    expect(page(true, { controlled: true, changes: 1 }).onUpdate).toHaveBeenCalledTimes(1);
    expect(page(true, { controlled: true, changes: 0 }).onUpdate).not.toHaveBeenCalled();
  });

  it('the first install and then an update, both before the module ran', () => {
    expect(page(true, { controlled: false, changes: 1 }).onUpdate).not.toHaveBeenCalled();
    expect(page(true, { controlled: false, changes: 2 }).onUpdate).toHaveBeenCalledTimes(1);
  });

  it('without the early count (a page without index.html\'s script), takeovers from now on', () => {
    const { sw, onUpdate } = page(true);
    sw.dispatchEvent(new Event('controllerchange'));
    expect(onUpdate).toHaveBeenCalledTimes(1);
  });
});
