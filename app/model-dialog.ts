/**
 * The model dialog (the model chip opens it): the embedded model or a Hugging Face repo id / URL, the
 * presets with their sizes and whether they fit this GPU, and the models stored in this browser.
 * Choosing one saves it as the model and asks for it to be loaded.
 */
import { $ } from './dom';
import { formatBytes } from './format';
import { presetButtons } from './presets-view';
import { specLabel } from './model-spec';
import { client, currentSpec, settings, state } from './state';

const modelDialog = $<HTMLDialogElement>('model-dialog');
const modelForm = $<HTMLFormElement>('model-form');
const specInput = $<HTMLInputElement>('model-spec');
const source = () => modelForm.elements.namedItem('source') as RadioNodeList;

export function openModelDialog(): void {
  const spec = currentSpec();
  const isDefault = spec === 'default' || spec === '';
  source().value = isDefault ? 'default' : 'custom';
  specInput.value = isDefault ? '' : spec;
  const dl = $('recent-models');
  dl.replaceChildren(
    ...settings.recentModels.map((m) => {
      const o = document.createElement('option');
      o.value = m;
      return o;
    }),
  );
  $('model-note').textContent = state.modelInfo ? `Loaded now: ${specLabel(state.loadedSpec)} (${formatBytes(state.modelInfo.weightBytes)} of weights on the GPU).` : '';
  void renderStored();
  void renderPresets();
  modelDialog.showModal();
}

/** Presets: real models with their sizes and whether they suit this GPU (memory and speed); a click picks one. */
async function renderPresets(): Promise<void> {
  const box = $('model-presets');
  box.replaceChildren(
    ...(await presetButtons((p) => {
      specInput.value = p.id;
      source().value = 'custom';
    })),
  );
}

/** The models kept in this browser's storage, each with a delete button. */
async function renderStored(): Promise<void> {
  const box = $('stored-models');
  let list: Awaited<ReturnType<typeof client.listStored>> = [];
  try {
    list = await client.listStored();
  } catch {
    list = [];
  }
  box.replaceChildren();
  $('stored-section').hidden = list.length === 0;
  for (const m of list) {
    const row = document.createElement('div');
    row.className = 'stored-row';
    const label = document.createElement('div');
    label.className = 'stored-label';
    const name = document.createElement('strong');
    name.textContent = m.name === 'default' ? 'Embedded model' : specLabel(m.name);
    name.title = m.id;
    const size = document.createElement('small');
    size.textContent = (m.complete ? formatBytes(m.bytes) : `${formatBytes(m.storedBytes)} of ${formatBytes(m.bytes)} (unfinished)`) + (m.weights ? ` · ${m.weights} copy` : '');
    label.append(name, size);
    const del = document.createElement('button');
    del.type = 'button';
    del.className = 'btn btn-ghost';
    del.textContent = 'Delete';
    del.setAttribute('aria-label', `Delete stored model ${name.textContent}`);
    del.addEventListener('click', async () => {
      del.disabled = true;
      await client.deleteStored(m.id).catch(() => undefined);
      void renderStored();
    });
    row.append(label, del);
    box.append(row);
  }
}

/** The model chip opens the dialog; "Load" calls `load` with the choice (the loader saves it once the model loaded). */
export function initModelDialog(load: (spec: string) => void): void {
  $('model-chip').addEventListener('click', openModelDialog);
  specInput.addEventListener('input', () => {
    source().value = 'custom';
  });
  modelDialog.addEventListener('close', () => {
    if (modelDialog.returnValue !== 'load') return;
    const spec = source().value === 'default' ? 'default' : specInput.value.trim();
    if (!spec) return;
    load(spec);
  });
}
