/**
 * The composer under the conversation: the message box, Send and Stop, and the hint beside them. Enter
 * sends (Shift+Enter breaks the line); Stop, or Escape outside a dialog, stops the running reply.
 */
import { $ } from './dom';
import { client, state } from './state';

export const input = $<HTMLTextAreaElement>('input');
const sendBtn = $<HTMLButtonElement>('send');
const stopBtn = $<HTMLButtonElement>('stop');
const composer = $<HTMLFormElement>('composer');

/** Send or Stop, whether Send can be pressed, and the hint: from the model's state and the box's text. */
export function updateComposer(): void {
  const { generation, modelState } = state;
  const busy = generation !== null && !generation.stopped;
  sendBtn.hidden = busy;
  stopBtn.hidden = !busy;
  sendBtn.disabled = (modelState !== 'ready' && modelState !== 'lost') || input.value.trim() === '';
  const hint = $('composer-hint');
  hint.textContent = modelState === 'loading' ? 'Loading the model…' : modelState === 'error' ? 'No model loaded' : modelState === 'elsewhere' ? 'Model in use in another tab' : '';
}

export function autoGrow(): void {
  input.style.height = 'auto';
  input.style.height = `${Math.min(input.scrollHeight, 240)}px`;
}

/** Puts `text` in the box, ready to send (a suggestion was picked). */
export function fillComposer(text: string): void {
  input.value = text;
  autoGrow();
  input.focus();
  updateComposer();
}

/** Stops the running reply at once (the UI stops now; the worker stops at its next token). */
export async function stopGeneration(): Promise<void> {
  const gen = state.generation;
  if (!gen) return;
  if (!gen.stopped) {
    gen.stopped = true;
    client.abort();
    gen.el.classList.remove('streaming');
    gen.el.classList.add('stopping');
    updateComposer();
    input.focus();
  }
  await gen.done;
}

export function initComposer(send: () => Promise<void>): void {
  input.addEventListener('input', () => {
    autoGrow();
    updateComposer();
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      if (!sendBtn.disabled && !sendBtn.hidden) composer.requestSubmit();
    }
  });
  composer.addEventListener('submit', (e) => {
    e.preventDefault();
    void send();
  });
  stopBtn.addEventListener('click', () => void stopGeneration());
  // Escape stops a running reply (unless a dialog is open: there it closes the dialog).
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && state.generation && !state.generation.stopped && !document.querySelector('dialog[open]')) void stopGeneration();
  });
}
