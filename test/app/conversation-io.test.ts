/** Export and import of conversations (app/conversation-io.ts): round trip, Markdown, and untrusted files refused with a reason. */
import { describe, expect, it } from 'vitest';
import { conversationsToJson, conversationToMarkdown, ImportError, parseConversations } from '../../app/conversation-io';
import type { Conversation } from '../../app/store';

const conv: Conversation = {
  id: 'c1',
  title: 'Sums',
  createdAt: 1,
  updatedAt: 2,
  model: 'default',
  systemPrompt: 'Be brief.',
  messages: [
    { role: 'user', content: 'What is 23 + 48?', at: 3 },
    { role: 'assistant', content: '<think>\n23 + 48\n</think>\n\nThe answer is 71.', at: 4, finishReason: 'stop', usage: { promptTokens: 20, cachedTokens: 0, completionTokens: 30, decodeTokensPerSecond: 1.5, prefillMs: 900, ttftMs: 1200 } },
  ],
};

const rejects = (text: string, why: RegExp) => {
  let err: unknown;
  try {
    parseConversations(text);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ImportError);
  expect((err as Error).message).toMatch(why);
};

describe('conversation export and import', () => {
  it('JSON round-trips every kept field', () => {
    expect(parseConversations(conversationsToJson([conv]))).toEqual([conv]);
  });

  it('Markdown has the title, the system prompt and each turn', () => {
    const md = conversationToMarkdown(conv);
    expect(md).toMatch(/^# Sums\n/);
    expect(md).toContain('## System\n\nBe brief.');
    expect(md).toContain('## You\n\nWhat is 23 + 48?');
    expect(md).toContain('## Assistant\n\n<think>');
  });

  it('a single conversation object imports too; unknown fields are dropped; a bad id gets a new one', () => {
    const [c] = parseConversations(JSON.stringify({ id: '../../etc', title: 'x', evil: '<script>', messages: [{ role: 'user', content: 'hi', html: '<img onerror=alert(1)>' }] }));
    expect(c.id).not.toBe('../../etc');
    expect(c).not.toHaveProperty('evil');
    expect(c.messages[0]).toEqual({ role: 'user', content: 'hi', at: expect.any(Number) });
  });

  it('refuses what is not an export, naming the problem', () => {
    rejects('not json', /not JSON/);
    rejects('[1,2]', /not a WebDMS conversation export/);
    rejects(JSON.stringify({ format: 'webdms-conversations', version: 2, conversations: [] }), /version 2/);
    rejects(JSON.stringify({ format: 'webdms-conversations', version: 1, conversations: [] }), /no conversations/);
    rejects(JSON.stringify({ messages: [{ role: 'system', content: 'x' }] }), /message 1 has role "system"/);
    rejects(JSON.stringify({ messages: [{ role: 'user', content: 5 }] }), /"content" must be a string/);
    rejects(JSON.stringify({ format: 'webdms-conversations', version: 1, conversations: [conv, { title: 'no messages' }] }), /Conversation 2 has no "messages" list/);
  });
});
