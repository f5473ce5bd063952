/**
 * The banners above the conversation, and every one the page shows, with its words: WebGPU missing, the
 * model failing to load or lacking storage, the model held by another tab, the GPU reset, a new version.
 * One banner per key: a new one replaces the old. Their buttons run what the caller passes.
 */
import { $ } from './dom';
import { readableNotice } from './format';

type BannerKey = 'load' | 'lock' | 'gpu' | 'storage' | 'update' | 'import' | 'adapter';

interface BannerAction {
  label: string;
  primary?: boolean;
  run: () => void;
}

const banners = $('banners');

function show(key: BannerKey, kind: 'error' | 'warn' | 'info', title: string, text: string, actions: BannerAction[] = []): void {
  clear(key);
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
      clear(key);
      a.run();
    });
    acts.append(btn);
  }
  const close = document.createElement('button');
  close.type = 'button';
  close.className = 'btn btn-icon banner-close';
  close.setAttribute('aria-label', 'Dismiss');
  close.textContent = '×';
  close.addEventListener('click', () => clear(key));
  b.append(body, acts, close);
  banners.append(b);
}

export function clear(key: BannerKey): void {
  for (const b of banners.querySelectorAll<HTMLElement>('.banner')) if (b.dataset.key === key) b.remove();
}

export function noWebGpu(): void {
  show(
    'load',
    'error',
    'WebGPU is not available',
    'WebGPU is not available in this browser, and WebDMS needs it to run the model on your GPU. ' +
      'It works in Chrome or Edge 113+ (Windows, macOS, ChromeOS; Android 121+), Safari 26+ (macOS, iOS, iPadOS) and Firefox 141+ (Windows). ' +
      'On Linux, Chrome needs WebGPU turned on at chrome://flags/#enable-unsafe-webgpu (and hardware acceleration, see chrome://gpu).',
  );
}

/** `fallback`: a model known to work (the one used before, or the embedded demo), offered as a button. */
export function loadFailed(message: string, retry: () => void, chooseAnother: () => void, fallback: BannerAction | null = null): void {
  const offline = /^You are offline/.test(message);
  show('load', 'error', offline ? 'You are offline' : 'The model could not be loaded', message, [
    { label: 'Retry', primary: true, run: retry },
    ...(fallback ? [fallback] : []),
    { label: 'Choose another model', run: chooseAnother },
  ]);
}

export function noStorage(message: string, runWithoutStoring: () => void, freeSpace: () => void): void {
  show('load', 'error', 'Not enough storage for this model', message, [
    { label: 'Run without storing', primary: true, run: runWithoutStoring },
    { label: 'Free up space', run: freeSpace },
  ]);
}

/** The model loaded, but its weights are not (or not newly) kept in this browser. */
export function storageWarning(stored: boolean | undefined, warning: string): void {
  show('storage', 'info', stored ? 'Using the stored copy' : 'Running without storing', readableNotice(warning, navigator.onLine !== false));
}


export function waitingForTab(): void {
  show('lock', 'info', 'Waiting for the other tab', 'The model will load here as soon as the other WebDMS tab closes or unloads its model.');
}

export function tabBusy(useHere: () => void, wait: () => void): void {
  show(
    'lock',
    'warn',
    'WebDMS is already running in another tab',
    'A model is loaded in another tab of this browser. Loading it here as well would hold a second copy in GPU memory, which can crash both tabs.',
    [
      { label: 'Use it here instead', primary: true, run: useHere },
      { label: 'Wait for the other tab', run: wait },
    ],
  );
}

export function modelMoved(loadHere: () => void): void {
  show('lock', 'warn', 'The model moved to another tab', 'Another WebDMS tab took over the model, and this tab let its copy go to free the GPU memory.', [
    { label: 'Load it here again', primary: true, run: loadHere },
  ]);
}

export function gpuReset(message: string, loadNow: () => void): void {
  show('gpu', 'warn', 'The GPU was reset', `${message}. The model will load again when you send your next message.`, [
    { label: 'Load it now', primary: true, run: loadNow },
  ]);
}

export function newVersion(): void {
  show('update', 'info', 'A new version of WebDMS is ready', 'Reload to use it. Your conversations and stored models are kept.', [
    { label: 'Reload', primary: true, run: () => location.reload() },
  ]);
}

export function imported(count: number, renamed: number): void {
  show('import', 'info', `Imported ${count} conversation${count === 1 ? '' : 's'}`, renamed ? `${renamed} had the id of one you already have and were added as new ones; nothing was overwritten.` : 'They are in the list of conversations.');
}

export function importFailed(message: string): void {
  show('import', 'error', 'The file could not be imported', `${message} Nothing was imported.`);
}

/** WebGPU runs on a software rasterizer here: say so, with the speed to expect. */
export function softwareAdapter(name: string, expected: { decode: string; firstToken: string }): void {
  show(
    'adapter',
    'warn',
    `WebGPU runs in software here (${name})`,
    `This browser has no GPU acceleration for WebGPU, so the model runs on the CPU: expect about ${expected.decode} and ${expected.firstToken} ` +
      'before the first token with the 30 MB demo, and far slower with real models (the model list marks those too slow here). ' +
      'For real speed, turn on hardware acceleration (see chrome://gpu) or use a browser with WebGPU on your GPU.',
  );
}
