/**
 * The settings dialog: sampling (temperature, top-p, top-k, max tokens, system prompt) and the engine's
 * options (KV policy, budget and storage type, context, parallel chains, weight format). Saving keeps them in
 * localStorage; a change to the engine's options reloads the model.
 */
import { $ } from './dom';
import { settings, state } from './state';
import { saveSettings, type Settings } from './store';

const settingsDialog = $<HTMLDialogElement>('settings-dialog');
const settingsForm = $<HTMLFormElement>('settings-form');
type FormField = HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement;
const field = (name: string): FormField => settingsForm.elements.namedItem(name) as FormField;
const NUMERIC: (keyof Settings)[] = ['temperature', 'topP', 'topK', 'maxTokens', 'kvBudget', 'maxContext'];

function fillSettings(): void {
  for (const k of NUMERIC) field(k).value = String(settings[k]);
  field('kv').value = settings.kv;
  field('kvDtype').value = settings.kvDtype;
  field('weights').value = settings.weights;
  field('systemPrompt').value = settings.systemPrompt;
  field('chains').value = String(settings.chains);
  const limit = state.modelInfo?.maxContext;
  $('max-context-hint').textContent = `0 = the model's limit, at most 4096${limit ? ` (in use now: ${limit})` : ''}`;
  syncOutputs();
}

function syncOutputs(): void {
  $('out-temperature').textContent = Number(field('temperature').value).toFixed(2);
  $('out-topP').textContent = Number(field('topP').value).toFixed(2);
}

/** The Settings button opens the dialog; `reload` loads the model again with the saved engine options. */
export function initSettingsDialog(reload: () => void): void {
  settingsForm.addEventListener('input', syncOutputs);
  $('open-settings').addEventListener('click', () => {
    fillSettings();
    settingsDialog.showModal();
  });
  settingsDialog.addEventListener('close', () => {
    const action = settingsDialog.returnValue;
    if (action !== 'save' && action !== 'reload') return;
    const before = JSON.stringify([settings.kv, settings.kvBudget, settings.kvDtype, settings.maxContext, settings.weights, settings.chains]);
    for (const k of NUMERIC) {
      const v = Number(field(k).value);
      if (Number.isFinite(v)) (settings as unknown as Record<string, number>)[k] = v;
    }
    settings.maxTokens = Math.max(1, Math.round(settings.maxTokens));
    settings.topK = Math.max(0, Math.round(settings.topK));
    settings.maxContext = Math.max(0, Math.round(settings.maxContext));
    settings.kv = field('kv').value as Settings['kv'];
    settings.kvDtype = field('kvDtype').value as Settings['kvDtype'];
    settings.weights = field('weights').value as Settings['weights'];
    settings.systemPrompt = field('systemPrompt').value;
    settings.chains = Math.max(1, Math.round(Number(field('chains').value) || 1));
    saveSettings(settings);
    // More chains need more KV sequences: the engine is reloaded for them.
    const after = JSON.stringify([settings.kv, settings.kvBudget, settings.kvDtype, settings.maxContext, settings.weights, settings.chains]);
    if (action === 'reload' || (before !== after && state.modelState === 'ready')) reload();
  });
}
