/**
 * Fitting a conversation into the context: render it with the chat template and, while it is too long,
 * drop the oldest turn (a user message and the replies up to the next one; a leading system message is
 * kept). What was dropped is reported, so the page and the CLI can say so instead of silently forgetting.
 */
import type { ChatMessage, ContextDropped } from './protocol';

export interface FitTokenizer {
  applyChatTemplate(messages: ChatMessage[], opts: { addGenerationPrompt: boolean }): string;
  encode(text: string, addSpecial?: boolean): number[];
}

export class ContextError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ContextError';
  }
}

/** The prompt ids of `messages` in at most `budget` tokens, and what had to go (null when nothing did). */
export function fitConversation(tok: FitTokenizer, messages: ChatMessage[], budget: number): { ids: number[]; dropped: ContextDropped | null } {
  const system = messages[0]?.role === 'system' ? [messages[0]] : [];
  let rest = messages.slice(system.length);
  let full = -1;
  for (;;) {
    const ids = tok.encode(tok.applyChatTemplate(system.concat(rest), { addGenerationPrompt: true }), false);
    if (full < 0) full = ids.length;
    if (ids.length <= budget) {
      const messagesDropped = messages.length - system.length - rest.length;
      return { ids, dropped: messagesDropped > 0 ? { messages: messagesDropped, tokens: full - ids.length } : null };
    }
    let cut = 1;
    while (cut < rest.length && rest[cut].role !== 'user') cut++;
    if (cut >= rest.length) {
      throw new ContextError(`The message is too long: ${ids.length} prompt tokens, and this model's context leaves room for ${budget} with the reply's max tokens.`);
    }
    rest = rest.slice(cut);
  }
}

/** The words the page and the CLI use. */
export function droppedNotice(d: ContextDropped): string {
  return `Earlier turns no longer fit: ${d.tokens} tokens dropped (${d.messages} message${d.messages === 1 ? '' : 's'}, oldest first).`;
}
