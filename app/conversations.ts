/**
 * The saved conversations in the sidebar (IndexedDB, app/store.ts): the list, newest first, opening one,
 * a new chat, deleting. On narrow screens the sidebar slides in over the page.
 */
import { $ } from './dom';
import { input, stopGeneration } from './composer';
import { renderLog } from './conversation-log';
import { relativeTime } from './format';
import { blankConversation, state } from './state';
import { deleteConversation, listConversations, loadConversation, type Conversation } from './store';

export async function renderConvList(): Promise<void> {
  const list = $('conv-list');
  let convs: Conversation[];
  try {
    convs = await listConversations();
  } catch {
    convs = [];
  }
  list.replaceChildren();
  if (convs.length === 0) {
    const p = document.createElement('p');
    p.className = 'muted small empty-list';
    p.textContent = 'Your conversations are kept in this browser.';
    list.append(p);
    return;
  }
  for (const c of convs) {
    const row = document.createElement('div');
    row.className = 'conv-row';
    if (c.id === state.conv.id) row.setAttribute('aria-current', 'true');
    const open = document.createElement('button');
    open.type = 'button';
    open.className = 'conv-open';
    const t = document.createElement('span');
    t.className = 'conv-title';
    t.textContent = c.title;
    const when = document.createElement('span');
    when.className = 'conv-when';
    when.textContent = relativeTime(c.updatedAt);
    open.append(t, when);
    open.addEventListener('click', () => void openConversation(c.id));
    const del = document.createElement('button');
    del.type = 'button';
    del.className = 'btn btn-icon conv-del';
    del.setAttribute('aria-label', `Delete conversation: ${c.title}`);
    del.innerHTML = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 7h16M10 11v6M14 11v6M6 7l1 13h10l1-13M9 7V4h6v3"/></svg>';
    del.addEventListener('click', async () => {
      if (!confirm(`Delete “${c.title}”?`)) return;
      await deleteConversation(c.id);
      if (c.id === state.conv.id) newConversation();
      void renderConvList();
    });
    row.append(open, del);
    list.append(row);
  }
}

async function openConversation(id: string): Promise<void> {
  await stopGeneration();
  const c = await loadConversation(id);
  if (!c) return;
  state.conv = c;
  state.kvHistory = [];
  renderLog();
  void renderConvList();
  closeSidebar();
}

function newConversation(): void {
  void stopGeneration();
  state.conv = blankConversation();
  state.kvHistory = [];
  renderLog();
  void renderConvList();
  closeSidebar();
  input.focus();
}

function closeSidebar(): void {
  document.body.classList.remove('sidebar-open');
  $('toggle-sidebar').setAttribute('aria-expanded', 'false');
}

/** "New chat", and the button that shows the sidebar on narrow screens. */
export function initConversations(): void {
  $('new-chat').addEventListener('click', newConversation);
  $('toggle-sidebar').addEventListener('click', () => {
    const open = document.body.classList.toggle('sidebar-open');
    $('toggle-sidebar').setAttribute('aria-expanded', String(open));
  });
}
