/**
 * The empty conversation's top: on the first visit, the choice of a model (a real one from Hugging Face, the
 * presets with their download size, memory and fit here, or the 30 MB offline demo, which loads meanwhile);
 * later, with the demo loaded, what the demo can do and a way to a real model.
 */
import { DEMO_ABOUT, DEMO_DOWNLOAD, isDemoSpec } from './demo-model';
import { presetButtons } from './presets-view';
import { settings, state } from './state';
import { saveSettings } from './store';

let loadChoice: (spec: string) => void = () => undefined;
let openDialog: () => void = () => undefined;
let repaint: () => void = () => undefined;

/** `load` loads (and, once loaded, saves) a model; `open` opens the model dialog; `rerender` repaints the log. */
export function initWelcome(load: (spec: string) => void, open: () => void, rerender: () => void): void {
  loadChoice = load;
  openDialog = open;
  repaint = rerender;
}

/** The first visit (nothing chosen yet, and no link naming a model). */
export const isFirstRun = (): boolean => !settings.welcomed && state.urlModel === null;

function done(): void {
  settings.welcomed = true;
  saveSettings(settings);
}

function button(label: string, cls: string, run: () => void): HTMLButtonElement {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = `btn ${cls}`;
  b.textContent = label;
  b.addEventListener('click', run);
  return b;
}

/** The first-run choice, as a region of the empty conversation. */
export function welcomeSection(): HTMLElement {
  const sec = document.createElement('section');
  sec.className = 'welcome';
  sec.setAttribute('aria-labelledby', 'welcome-title');
  const h = document.createElement('h1');
  h.id = 'welcome-title';
  h.textContent = 'Choose a model to start';
  const intro = document.createElement('p');
  intro.className = 'muted';
  intro.textContent = 'WebDMS runs a language model in this tab, on your GPU; nothing you type leaves your device. The model is downloaded once and kept in this browser.';

  const real = document.createElement('div');
  real.className = 'welcome-card';
  const rh = document.createElement('h2');
  rh.textContent = 'A real model from Hugging Face';
  const rp = document.createElement('p');
  rp.className = 'muted small';
  rp.textContent = 'Answers questions and chats. Sizes at q4; memory is what the GPU must hold; the fit is for this browser and GPU.';
  const list = document.createElement('div');
  list.className = 'preset-list';
  list.setAttribute('role', 'group');
  list.setAttribute('aria-label', 'Models from Hugging Face');
  void presetButtons((p) => {
    done();
    loadChoice(p.id);
    repaint();
  }, 'Download').then((bs) => list.replaceChildren(...bs));
  const other = button('Another model or URL…', 'btn-ghost', () => openDialog());
  real.append(rh, rp, list, other);

  const demo = document.createElement('div');
  demo.className = 'welcome-card';
  const dh = document.createElement('h2');
  dh.textContent = `The offline demo (${DEMO_DOWNLOAD})`;
  const dp = document.createElement('p');
  dp.className = 'muted small';
  dp.textContent = DEMO_ABOUT;
  demo.append(
    dh,
    dp,
    button('Use the offline demo', 'btn-primary', () => {
      done();
      if (!isDemoSpec(state.loadedSpec) || state.modelState === 'error') loadChoice('default');
      repaint();
    }),
  );
  const cards = document.createElement('div');
  cards.className = 'welcome-cards';
  cards.append(real, demo);
  sec.append(h, intro, cards);
  return sec;
}

/** With the demo loaded: what it does, and a way to a real model. */
export function demoNote(): HTMLElement {
  const box = document.createElement('div');
  box.className = 'demo-about';
  const p = document.createElement('p');
  p.textContent = DEMO_ABOUT;
  box.append(p, button('Choose a real model', 'btn-ghost', () => openDialog()));
  return box;
}
