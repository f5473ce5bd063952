/**
 * The conversation log: the open conversation's messages (the user's as plain text, the model's through
 * app/render.ts, sanitized, with parallel chains, notes, errors and a meta line), or the empty state with
 * suggestions when it has none.
 */
import { $ } from './dom';
import { paintChains, voteLine } from './chains';
import { fillComposer } from './composer';
import { droppedText } from './format';
import { renderMessage } from './render';
import { DEMO_SUGGESTIONS, GENERAL_SUGGESTIONS, isDemoSpec } from './demo-model';
import { currentSpec, state } from './state';
import { demoNote, isFirstRun, welcomeSection } from './welcome';
import type { StoredMessage } from './store';

const log = $('log');

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
      bits.push(`${m.usage.completionTokens} tokens`);
      if (m.usage.decodeTokensPerSecond > 0) bits.push(`${m.usage.decodeTokensPerSecond.toFixed(1)} tok/s`);
      if (m.usage.cachedTokens > 0) bits.push(`${m.usage.cachedTokens} cached prompt tokens reused`);
    }
  }
  if (bits.length) {
    const s = document.createElement('span');
    s.textContent = bits.join(' · ');
    meta.append(s);
  }
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
