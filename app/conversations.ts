/**
 * The saved conversations in the sidebar (IndexedDB, app/store.ts): the list, newest first, opening one,
 * a new chat, deleting. On narrow screens the sidebar slides in over the page.
 */
import { $ } from './dom';
import { input, stopGeneration } from './composer';
import { renderLog } from './conversation-log';
import { relativeTime } from './format';
import * as banners from './banners';
import { conversationsToJson, conversationToMarkdown, ImportError, IMPORT_LIMITS, parseConversations } from './conversation-io';
import { blankConversation, settings, state } from './state';
import { deleteConversation, listConversations, loadConversation, newId, saveConversation, type Conversation } from './store';

/** The search box's text, lower-cased: conversations whose title or messages contain it are listed. */
let query = '';

function matches(c: Conversation): boolean {
  if (!query) return true;
  return c.title.toLowerCase().includes(query) || c.messages.some((m) => m.content.toLowerCase().includes(query));
}

export async function renderConvList(): Promise<void> {
  const list = $('conv-list');
  let all: Conversation[];
  try {
    all = await listConversations();
  } catch {
    all = [];
  }
  const convs = all.filter(matches);
  list.replaceChildren();
  if (convs.length === 0) {
    const p = document.createElement('p');
    p.className = 'muted small empty-list';
    p.textContent = query && all.length ? 'No conversations match.' : 'Your conversations are kept in this browser.';
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
    const ren = document.createElement('button');
    ren.type = 'button';
    ren.className = 'btn btn-icon conv-ren';
    ren.setAttribute('aria-label', `Rename conversation: ${c.title}`);
    ren.innerHTML = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 20h4L19 9l-4-4L4 16zM14 6l4 4"/></svg>';
    ren.addEventListener('click', () => startRename(open, c));
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
    row.append(open, ren, del);
    list.append(row);
  }
}

/** Renames in place: Enter saves, Escape (or leaving the box) keeps the old title. */
function startRename(open: HTMLElement, c: Conversation): void {
  const box = document.createElement('input');
  box.type = 'text';
  box.className = 'conv-rename';
  box.value = c.title;
  box.maxLength = 200;
  box.setAttribute('aria-label', 'Conversation title');
  open.hidden = true;
  open.after(box);
  box.focus();
  box.select();
  let settled = false;
  const finish = async (save: boolean) => {
    if (settled) return;
    settled = true;
    const title = box.value.replace(/\s+/g, ' ').trim();
    if (save && title && title !== c.title) {
      const stored = (await loadConversation(c.id)) ?? c;
      stored.title = title;
      if (state.conv.id === c.id) state.conv.title = title;
      await saveConversation(state.conv.id === c.id ? state.conv : stored).catch(() => undefined);
    }
    box.remove();
    open.hidden = false;
    await renderConvList();
    // Back to the renamed row's button, for the keyboard.
    [...$('conv-list').querySelectorAll<HTMLElement>('.conv-ren')].find((b) => b.getAttribute('aria-label') === `Rename conversation: ${save && title ? title : c.title}`)?.focus();
  };
  box.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      e.preventDefault();
      void finish(true);
    } else if (e.key === 'Escape') {
      e.preventDefault();
      e.stopPropagation();
      void finish(false);
    }
  });
  box.addEventListener('blur', () => void finish(true));
}

/** Downloads `text` as a file named `name`. */
function download(name: string, type: string, text: string): void {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

const fileName = (title: string, ext: string) => `${title.replace(/[^\w\- ]+/g, '').trim().replace(/\s+/g, '-').slice(0, 60) || 'conversation'}.${ext}`;

/** Reads a chosen JSON file and adds its conversations (checked by parseConversations); ids already taken get new ones. */
async function importFile(file: File): Promise<void> {
  try {
    if (file.size > IMPORT_LIMITS.fileBytes) throw new ImportError(`The file is ${Math.round(file.size / 1048576)} MB; at most ${IMPORT_LIMITS.fileBytes / 1048576} MB can be imported.`);
    const convs = parseConversations(await file.text());
    const have = new Set((await listConversations()).map((c) => c.id));
    let renamed = 0;
    for (const c of convs) {
      if (have.has(c.id)) {
        c.id = newId();
        renamed++;
      }
      have.add(c.id);
      await saveConversation(c);
    }
    banners.imported(convs.length, renamed);
  } catch (e) {
    banners.importFailed(e instanceof ImportError ? e.message : `Reading the file failed: ${(e as Error)?.message ?? e}.`);
  }
  await renderConvList();
}

async function openConversation(id: string): Promise<void> {
  await stopGeneration();
  const c = await loadConversation(id);
  if (!c) return;
  state.conv = c;
  state.kvHistory = [];
  updateSystemButton();
  renderLog();
  void renderConvList();
  closeSidebar();
}

function newConversation(): void {
  void stopGeneration();
  state.conv = blankConversation();
  state.kvHistory = [];
  updateSystemButton();
  renderLog();
  void renderConvList();
  closeSidebar();
  input.focus();
}

/** The drawer is modal on narrow screens: the page behind it is inert until it closes. */
const narrowScreen = window.matchMedia('(max-width: 760px)');

function openSidebar(): void {
  document.body.classList.add('sidebar-open');
  $('toggle-sidebar').setAttribute('aria-expanded', 'true');
  if (!narrowScreen.matches) return;
  $('drawer-backdrop').hidden = false;
  for (const id of ['main', 'memory']) document.getElementById(id)?.toggleAttribute('inert', true);
  document.querySelector<HTMLElement>('main.main')?.toggleAttribute('inert', true);
  $('close-sidebar').focus();
}

function closeSidebar(): void {
  const wasOpen = document.body.classList.contains('sidebar-open');
  document.body.classList.remove('sidebar-open');
  $('toggle-sidebar').setAttribute('aria-expanded', 'false');
  $('drawer-backdrop').hidden = true;
  document.querySelector<HTMLElement>('main.main')?.removeAttribute('inert');
  document.getElementById('memory')?.removeAttribute('inert');
  if (wasOpen && narrowScreen.matches) $('toggle-sidebar').focus();
}

/** "New chat", search, rename, export and import, the system prompt, and the sidebar on narrow screens. */
export function initConversations(): void {
  $('new-chat').addEventListener('click', newConversation);
  $('toggle-sidebar').addEventListener('click', () => (document.body.classList.contains('sidebar-open') ? closeSidebar() : openSidebar()));
  $('close-sidebar').addEventListener('click', closeSidebar);
  // A tap outside the drawer, or Escape, closes it.
  $('drawer-backdrop').addEventListener('click', closeSidebar);
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && document.body.classList.contains('sidebar-open') && !document.querySelector('dialog[open]')) {
      e.preventDefault();
      closeSidebar();
    }
  });
  narrowScreen.addEventListener('change', () => closeSidebar());
  $<HTMLInputElement>('conv-search').addEventListener('input', (e) => {
    query = (e.target as HTMLInputElement).value.trim().toLowerCase();
    void renderConvList();
  });

  const exportDialog = $<HTMLDialogElement>('export-dialog');
  $('export-open').addEventListener('click', () => {
    const empty = state.conv.messages.length === 0;
    $<HTMLButtonElement>('export-md').disabled = empty;
    $<HTMLButtonElement>('export-json').disabled = empty;
    exportDialog.showModal();
  });
  $('export-md').addEventListener('click', () => {
    download(fileName(state.conv.title, 'md'), 'text/markdown', conversationToMarkdown(state.conv));
    exportDialog.close();
  });
  $('export-json').addEventListener('click', () => {
    download(fileName(state.conv.title, 'json'), 'application/json', conversationsToJson([state.conv]));
    exportDialog.close();
  });
  $('export-all').addEventListener('click', async () => {
    const all = await listConversations().catch(() => [] as Conversation[]);
    download('webdms-conversations.json', 'application/json', conversationsToJson(all));
    exportDialog.close();
  });
  const fileInput = $<HTMLInputElement>('import-file');
  $('import-open').addEventListener('click', () => fileInput.click());
  fileInput.addEventListener('change', () => {
    const f = fileInput.files?.[0];
    fileInput.value = '';
    if (f) void importFile(f);
  });

  // The open conversation's system prompt.
  const systemDialog = $<HTMLDialogElement>('system-dialog');
  const systemText = $<HTMLTextAreaElement>('system-text');
  $('system-open').addEventListener('click', () => {
    systemText.value = state.conv.systemPrompt ?? settings.systemPrompt;
    systemDialog.showModal();
  });
  systemDialog.addEventListener('close', () => {
    if (systemDialog.returnValue !== 'save') return;
    state.conv.systemPrompt = systemText.value.trim();
    updateSystemButton();
    if (state.conv.messages.length > 0) void saveConversation(state.conv).then(renderConvList, () => undefined);
  });
}

/** The System prompt button shows whether this conversation has one. */
export function updateSystemButton(): void {
  const has = !!(state.conv.systemPrompt ?? settings.systemPrompt).trim();
  $('system-open').dataset.set = String(has);
  $('system-open').setAttribute('aria-label', has ? 'System prompt (set)' : 'System prompt');
}
