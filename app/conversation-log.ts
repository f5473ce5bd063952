/**
 * The conversation log: the open conversation's messages (the user's as plain text, the model's through
 * app/render.ts, sanitized, with parallel chains, notes, errors and a meta line), or the empty state with
 * suggestions when it has none.
 */
import { $ } from './dom';
import { paintChains, voteLine } from './chains';
import { fillComposer } from './composer';
import { droppedText, formatSeconds, plural } from './format';
import { renderMessage } from './render';
import { DEMO_SUGGESTIONS, GENERAL_SUGGESTIONS, isDemoSpec } from './demo-model';
import { currentSpec, state } from './state';
import { demoNote, isFirstRun, welcomeSection } from './welcome';
import { prefillTokensPerSecond, type StoredMessage } from './store';

const log = $('log');

/** What the message buttons do (app/reply.ts; passed in by main.ts, which keeps the import graph acyclic). */
export interface MessageActions {
  regenerate: () => void;
  editAndResend: (index: number, text: string) => void;
}
let actions: MessageActions = { regenerate: () => undefined, editAndResend: () => undefined };
export function setMessageActions(a: MessageActions): void {
  actions = a;
}

/** Paints the open conversation afresh. */
export function renderLog(): void {
  log.replaceChildren();
  if (state.conv.messages.length === 0) {
    const empty = document.createElement('div');
    empty.className = 'empty';
    const demo = isDemoSpec(state.loadedSpec || currentSpec());
    if (isFirstRun()) {
      empty.append(welcomeSection());
    } else {
      empty.innerHTML = '<div class="empty-logo" aria-hidden="true"></div><h1>What can I help with?</h1>';
      if (demo) empty.append(demoNote());
      else {
        const p = document.createElement('p');
        p.className = 'muted';
        p.textContent = 'The model runs here, on your GPU. Its memory is compressed as it goes; watch it in the Memory panel.';
        empty.append(p);
      }
    }
    const chips = document.createElement('div');
    chips.className = 'chips';
    chips.setAttribute('role', 'group');
    chips.setAttribute('aria-label', demo ? 'Things the demo model was trained to do' : 'Suggestions');
    for (const s of demo ? DEMO_SUGGESTIONS : GENERAL_SUGGESTIONS) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'chip';
      b.textContent = s.label;
      b.addEventListener('click', () => fillComposer(s.prompt));
      chips.append(b);
    }
    empty.append(chips);
    log.append(empty);
    return;
  }
  for (const m of state.conv.messages) appendMessage(m, false);
  scrollToBottom(true);
}

export function appendMessage(m: StoredMessage, streaming: boolean): HTMLElement {
  log.querySelector('.empty')?.remove();
  // Only the last reply can be generated again.
  for (const b of log.querySelectorAll('.msg-action[aria-label="Regenerate"]')) b.remove();
  const el = document.createElement('article');
  el.className = `msg msg-${m.role}`;
  el.setAttribute('aria-label', m.role === 'user' ? 'You said' : 'Assistant said');
  const body = document.createElement('div');
  body.className = 'msg-body';
  const content = document.createElement('div');
  content.className = 'content';
  const meta = document.createElement('div');
  meta.className = 'msg-meta';
  body.append(content, meta);
  if (m.role === 'assistant') {
    const av = document.createElement('div');
    av.className = 'avatar';
    av.setAttribute('aria-hidden', 'true');
    el.append(av);
  }
  el.append(body);
  log.append(el);
  paintMessage(el, m, streaming);
  return el;
}

/** Paints a message into its element: user text as plain text, model text through renderMessage (sanitized). */
export function paintMessage(el: HTMLElement, m: StoredMessage, streaming: boolean): void {
  const content = el.querySelector<HTMLElement>('.content')!;
  const meta = el.querySelector<HTMLElement>('.msg-meta')!;
  if (m.role === 'user') {
    content.textContent = m.content;
  } else {
    renderMessage(content, m.content, { streaming });
    el.classList.toggle('streaming', streaming);
    if (streaming && m.content === '') content.innerHTML = '<span class="typing" aria-label="Thinking"><i></i><i></i><i></i></span>';
    paintChains(el, m.chains, m.vote, streaming);
  }
  meta.replaceChildren();
  const bits: string[] = [];
  if (m.dropped) {
    const note = document.createElement('div');
    note.className = 'msg-notice';
    note.textContent = droppedText(m.dropped);
    meta.append(note);
  }
  if (!streaming && m.role === 'assistant' && m.finishReason === 'length' && endsInThink(m.content)) {
    const hint = document.createElement('div');
    hint.className = 'msg-notice msg-hint';
    hint.textContent = 'The reply reached Max tokens while the model was still thinking, before it wrote an answer. Raise Max tokens in Settings and press Regenerate.';
    meta.append(hint);
  }
  if (m.error) {
    const err = document.createElement('div');
    err.className = 'msg-error';
    err.textContent = m.error;
    meta.append(err);
  }
  if (!streaming && m.role === 'assistant') {
    if (m.finishReason === 'abort') bits.push('Stopped');
    if (m.finishReason === 'length') bits.push('Reached max tokens');
    if (m.vote && m.chains) bits.push(voteLine(m.vote, m.chains.length));
    if (m.usage) {
      const u = m.usage;
      bits.push(plural(u.completionTokens, 'token'));
      if (u.ttftMs !== undefined) bits.push(`first token ${formatSeconds(u.ttftMs)}`);
      const pre = prefillTokensPerSecond(u);
      if (pre !== null) bits.push(`prefill ${pre.toFixed(pre >= 10 ? 0 : 1)} tok/s`);
      if (u.decodeTokensPerSecond > 0) bits.push(`decode ${u.decodeTokensPerSecond.toFixed(1)} tok/s`);
      if (u.cachedTokens > 0) bits.push(`${plural(u.cachedTokens, 'cached prompt token')} reused`);
    }
  }
  if (bits.length) {
    const s = document.createElement('span');
    s.textContent = bits.join(' · ');
    meta.append(s);
  }
  paintActions(el, m, streaming);
}

function actionButton(label: string, icon: string, run: (b: HTMLButtonElement) => void): HTMLButtonElement {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = 'btn btn-ghost msg-action';
  b.setAttribute('aria-label', label);
  b.title = label;
  b.innerHTML = `<svg viewBox="0 0 24 24" aria-hidden="true"><path d="${icon}"/></svg>`;
  b.addEventListener('click', () => run(b));
  return b;
}

const ICON_COPY = 'M9 9h10v10H9zM5 15V5h10';
const ICON_EDIT = 'M4 20h4L19 9l-4-4L4 16zM14 6l4 4';
const ICON_REGEN = 'M20 11a8 8 0 1 0-2.3 5.7M20 4v7h-7';

/** Copy on every finished message; Edit on the user's; Regenerate on the last reply. Keyboard-reachable buttons with names. */
function paintActions(el: HTMLElement, m: StoredMessage, streaming: boolean): void {
  el.querySelector('.msg-actions')?.remove();
  if (streaming) return;
  const bar = document.createElement('div');
  bar.className = 'msg-actions';
  bar.append(
    actionButton('Copy', ICON_COPY, (b) => {
      const done = (ok: boolean) => {
        b.dataset.state = ok ? 'copied' : 'failed';
        b.title = ok ? 'Copied' : 'Copy failed: the browser did not allow it';
        setTimeout(() => {
          delete b.dataset.state;
          b.title = 'Copy';
        }, 2000);
      };
      navigator.clipboard?.writeText(m.content).then(() => done(true), () => done(false)) ?? done(false);
    }),
  );
  const idx = state.conv.messages.indexOf(m);
  const busy = state.generation !== null && !state.generation.stopped;
  if (m.role === 'user' && idx >= 0) bar.append(actionButton('Edit', ICON_EDIT, () => startEdit(el, m)));
  if (m.role === 'assistant' && idx === state.conv.messages.length - 1 && !busy) bar.append(actionButton('Regenerate', ICON_REGEN, () => actions.regenerate()));
  el.querySelector('.msg-body')!.append(bar);
}

/** Edits a user message in place: Enter (or "Send") resends it, Escape (or "Cancel") puts it back. */
function startEdit(el: HTMLElement, m: StoredMessage): void {
  const content = el.querySelector<HTMLElement>('.content')!;
  const bar = el.querySelector<HTMLElement>('.msg-actions');
  if (bar) bar.hidden = true;
  const box = document.createElement('div');
  box.className = 'msg-edit';
  const ta = document.createElement('textarea');
  ta.value = m.content;
  ta.rows = Math.min(8, m.content.split('\n').length + 1);
  ta.setAttribute('aria-label', 'Edit message');
  const send = document.createElement('button');
  send.type = 'button';
  send.className = 'btn btn-primary';
  send.textContent = 'Send';
  send.setAttribute('aria-label', 'Send edited message');
  const cancel = document.createElement('button');
  cancel.type = 'button';
  cancel.className = 'btn btn-ghost';
  cancel.textContent = 'Cancel';
  cancel.setAttribute('aria-label', 'Cancel editing');
  const row = document.createElement('div');
  row.className = 'msg-edit-actions';
  row.append(cancel, send);
  box.append(ta, row);
  content.hidden = true;
  content.after(box);
  const close = () => {
    box.remove();
    content.hidden = false;
    if (bar) bar.hidden = false;
  };
  const submit = () => {
    const text = ta.value.trim();
    if (!text) return;
    const idx = state.conv.messages.indexOf(m);
    close();
    if (idx >= 0) actions.editAndResend(idx, text);
  };
  send.addEventListener('click', submit);
  cancel.addEventListener('click', close);
  ta.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submit();
    } else if (e.key === 'Escape') {
      e.preventDefault();
      e.stopPropagation();
      close();
    }
  });
  ta.focus();
}

/** Whether `text` is still inside a think block at its end (a <think> with no </think> after it). */
export function endsInThink(text: string): boolean {
  const open = text.lastIndexOf('<think>');
  return open >= 0 && text.indexOf('</think>', open) < 0;
}

/** Scrolls to the newest message when the reader is near it already (or always, with `force`). */
export function scrollToBottom(force = false): void {
  const near = log.scrollHeight - log.scrollTop - log.clientHeight < 120;
  if (force || near) log.scrollTop = log.scrollHeight;
}

/** aria-busy while a reply streams. */
export function setLogBusy(busy: boolean): void {
  if (busy) log.setAttribute('aria-busy', 'true');
  else log.removeAttribute('aria-busy');
}
