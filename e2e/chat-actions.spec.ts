/**
 * The chat actions (issue 15, point 4) on the golden qwen3 fixture: copy a message, regenerate the last
 * reply, edit and resend a user message, a system prompt per conversation, rename and search
 * conversations, export (Markdown, JSON) and import (JSON, checked; a bad file imports nothing). Each is a
 * button with an accessible name, pressed here from the keyboard where it matters.
 */
import { readFileSync } from 'node:fs';
import { test, expect, type Page } from '@playwright/test';
import { openWithModel } from './helpers';

const FIXTURE = '/test/fixtures/golden/qwen3/';
const replies = (page: Page) => page.getByRole('log').locator('article.msg-assistant');
const users = (page: Page) => page.getByRole('log').locator('article.msg-user');

async function waitIdle(page: Page): Promise<void> {
  await expect(page.getByRole('button', { name: 'Send', exact: true })).toBeVisible({ timeout: 150_000 });
  await expect(replies(page).last().locator('.msg-meta')).toContainText(/\d+ tokens?/, { timeout: 150_000 });
}

/** The open conversation as stored in IndexedDB. */
const storedConversation = (page: Page) =>
  page.evaluate(async () => {
    const id = (window as unknown as { __webdms: { state: { conversationId: string } } }).__webdms.state.conversationId;
    const db = await new Promise<IDBDatabase>((res, rej) => {
      const r = indexedDB.open('webdms');
      r.onsuccess = () => res(r.result);
      r.onerror = () => rej(r.error);
    });
    const c = await new Promise<{ title: string; systemPrompt?: string; messages: { role: string; content: string }[] }>((res, rej) => {
      const r = db.transaction('conversations').objectStore('conversations').get(id);
      r.onsuccess = () => res(r.result);
      r.onerror = () => rej(r.error);
    });
    db.close();
    return c;
  });

test('copy, regenerate, edit and resend, system prompt, rename, search, export and import', async ({ page, context }) => {
  await context.grantPermissions(['clipboard-read', 'clipboard-write']);
  await openWithModel(page, `/?model=${encodeURIComponent(FIXTURE)}&temperature=0&maxTokens=3`);
  await expect(page.locator('#status-dot')).toHaveAttribute('data-state', 'ready', { timeout: 150_000 });

  // A system prompt for this conversation.
  await page.getByRole('button', { name: 'System prompt' }).click();
  const sys = page.getByRole('dialog', { name: 'System prompt' });
  await sys.getByLabel("This conversation's system prompt").fill('Answer in French.');
  await sys.getByRole('button', { name: 'Save' }).click();
  await expect(page.getByRole('button', { name: 'System prompt (set)' })).toBeVisible();

  await page.getByRole('textbox', { name: 'Message' }).fill('Tell me about the sea.');
  await page.keyboard.press('Enter');
  await waitIdle(page);
  // The reply's timings: time to first token, prefill and decode speed.
  await expect(replies(page).last().locator('.msg-meta')).toContainText(/first token ([\d.]+ s|\d+ min \d+ s) · prefill [\d.]+ tok\/s · decode [\d.]+ tok\/s/);
  await expect(page.locator('#mem-ttft')).toHaveText(/^([\d.]+ s|\d+ min \d+ s)$/);
  await expect(page.locator('#mem-prefill')).toHaveText(/[\d.]+ tok\/s/);
  expect((await storedConversation(page)).systemPrompt).toBe('Answer in French.');

  // Copy the whole reply (its Markdown source).
  const first = await storedConversation(page);
  const replyText = first.messages[1].content;
  await replies(page).last().getByRole('button', { name: 'Copy' }).click();
  await expect.poll(() => page.evaluate(() => navigator.clipboard.readText())).toBe(replyText);
  await users(page).first().getByRole('button', { name: 'Copy' }).click();
  await expect.poll(() => page.evaluate(() => navigator.clipboard.readText())).toBe('Tell me about the sea.');

  // Regenerate from the keyboard: the reply is replaced, not added.
  const regen = replies(page).last().getByRole('button', { name: 'Regenerate' });
  await regen.focus();
  await page.keyboard.press('Enter');
  await expect(replies(page).last().getByRole('button', { name: 'Regenerate' })).toBeVisible({ timeout: 150_000 });
  await waitIdle(page);
  await expect(replies(page)).toHaveCount(1);
  expect((await storedConversation(page)).messages.map((m) => m.role)).toEqual(['user', 'assistant']);

  // Edit the user message and resend with Enter: the old reply goes, a new one answers the new text.
  await users(page).first().getByRole('button', { name: 'Edit' }).click();
  const edit = page.getByRole('textbox', { name: 'Edit message' });
  await expect(edit).toBeFocused();
  await edit.fill('Tell me about the hills.');
  await page.keyboard.press('Enter');
  await waitIdle(page);
  await expect(users(page)).toHaveCount(1);
  await expect(users(page).first()).toContainText('Tell me about the hills.');
  await expect(replies(page)).toHaveCount(1);
  const edited = await storedConversation(page);
  expect(edited.messages.map((m) => [m.role, m.role === 'user' ? m.content : '']).flat()).toEqual(['user', 'Tell me about the hills.', 'assistant', '']);
  // Escape cancels an edit and keeps the text.
  await users(page).first().getByRole('button', { name: 'Edit' }).click();
  await page.getByRole('textbox', { name: 'Edit message' }).fill('discarded');
  await page.keyboard.press('Escape');
  await expect(users(page).first().locator('.content')).toHaveText('Tell me about the hills.');

  // Editing the first message retitled the conversation; rename it from the sidebar, with the keyboard.
  await page.getByRole('button', { name: /^Rename conversation: Tell me about the hills/ }).click();
  const title = page.getByRole('textbox', { name: 'Conversation title' });
  await title.fill('Seas and hills');
  await title.press('Enter');
  await expect(page.getByRole('navigation', { name: 'Saved conversations' })).toContainText('Seas and hills');
  expect((await storedConversation(page)).title).toBe('Seas and hills');

  // Search by message text (not in the title), case-insensitively.
  const search = page.getByRole('searchbox', { name: 'Search conversations' });
  await search.fill('ABOUT THE HILLS');
  await expect(page.getByRole('navigation', { name: 'Saved conversations' })).toContainText('Seas and hills');
  await search.fill('no such words');
  await expect(page.getByRole('navigation', { name: 'Saved conversations' })).toContainText('No conversations match.');
  await search.fill('');

  // Export as Markdown and JSON.
  await page.getByRole('button', { name: 'Export' }).click();
  const exp = page.getByRole('dialog', { name: 'Export' });
  const [md] = await Promise.all([page.waitForEvent('download'), exp.getByRole('button', { name: 'This conversation as Markdown' }).click()]);
  expect(md.suggestedFilename()).toBe('Seas-and-hills.md');
  const mdText = readFileSync((await md.path())!, 'utf8');
  expect(mdText).toMatch(/^# Seas and hills/);
  expect(mdText).toContain('## System\n\nAnswer in French.');
  expect(mdText).toContain('## You\n\nTell me about the hills.');
  await page.getByRole('button', { name: 'Export' }).click();
  const [json] = await Promise.all([page.waitForEvent('download'), exp.getByRole('button', { name: 'All conversations as JSON' }).click()]);
  const exported = JSON.parse(readFileSync((await json.path())!, 'utf8'));
  expect(exported.format).toBe('webdms-conversations');
  expect(exported.conversations).toHaveLength(1);

  // Import it back: the id is taken, so it comes in as a new conversation; nothing is overwritten.
  const chooser = page.waitForEvent('filechooser');
  await page.getByRole('button', { name: 'Import' }).click();
  await (await chooser).setFiles({ name: 'chats.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify(exported)) });
  await expect(page.getByRole('status').filter({ hasText: 'Imported 1 conversation' })).toBeVisible();
  await expect(page.getByRole('navigation', { name: 'Saved conversations' }).getByRole('button', { name: /^Rename conversation: Seas and hills/ })).toHaveCount(2);
  // A file that is not an export: a clear error, and nothing is added.
  const chooser2 = page.waitForEvent('filechooser');
  await page.getByRole('button', { name: 'Import' }).click();
  await (await chooser2).setFiles({ name: 'bad.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify({ messages: [{ role: 'system', content: 'x' }] })) });
  const alert = page.getByRole('alert').filter({ hasText: 'The file could not be imported' });
  await expect(alert).toContainText('only "user" and "assistant" can be imported. Nothing was imported.');
  await expect(page.getByRole('navigation', { name: 'Saved conversations' }).locator('.conv-row')).toHaveCount(2);
});
