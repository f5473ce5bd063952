/**
 * Conversations out of and into the page: JSON (every field the page keeps, to import again) and Markdown
 * (to read), and the import of a JSON file, which is untrusted: it is checked field by field, only the
 * known fields are kept, and a file that does not pass says why and imports nothing.
 */
import { newId, titleFrom, type Conversation, type StoredMessage } from './store';

export const EXPORT_FORMAT = 'webdms-conversations';
export const EXPORT_VERSION = 1;
/** Limits on an import, so a hostile file cannot fill the browser's storage in one go. */
export const IMPORT_LIMITS = { conversations: 1000, messages: 10_000, contentChars: 1_000_000, titleChars: 200, fileBytes: 50 * 1024 * 1024 };

export function conversationsToJson(convs: Conversation[]): string {
  return JSON.stringify({ format: EXPORT_FORMAT, version: EXPORT_VERSION, exportedAt: new Date().toISOString(), conversations: convs }, null, 2);
}

export function conversationToMarkdown(c: Conversation): string {
  const out = [`# ${c.title.replace(/\n/g, ' ')}`, '', `_Exported from WebDMS on ${new Date().toISOString().slice(0, 10)}${c.model ? ` · model: ${c.model}` : ''}_`, ''];
  if (c.systemPrompt?.trim()) out.push('## System', '', c.systemPrompt.trim(), '');
  for (const m of c.messages) {
    out.push(m.role === 'user' ? '## You' : '## Assistant', '', m.content.trim() || (m.error ? `_Error: ${m.error}_` : '_(empty)_'), '');
  }
  return out.join('\n');
}

export class ImportError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ImportError';
  }
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const finite = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

function checkMessage(v: unknown, where: string): StoredMessage {
  if (!isObj(v)) throw new ImportError(`${where} is not an object.`);
  if (v.role !== 'user' && v.role !== 'assistant') throw new ImportError(`${where} has role ${JSON.stringify(v.role)}; only "user" and "assistant" can be imported.`);
  if (typeof v.content !== 'string') throw new ImportError(`${where} has no text ("content" must be a string).`);
  if (v.content.length > IMPORT_LIMITS.contentChars) throw new ImportError(`${where} is longer than ${IMPORT_LIMITS.contentChars} characters.`);
  const m: StoredMessage = { role: v.role, content: v.content, at: finite(v.at) ?? Date.now() };
  if (v.finishReason === 'stop' || v.finishReason === 'length' || v.finishReason === 'abort') m.finishReason = v.finishReason;
  if (typeof v.error === 'string') m.error = v.error.slice(0, 2000);
  if (isObj(v.usage)) {
    const u = v.usage;
    const nums = [u.promptTokens, u.cachedTokens, u.completionTokens, u.decodeTokensPerSecond, u.prefillMs].map(finite);
    if (nums.every((n) => n !== undefined && n >= 0)) {
      m.usage = { promptTokens: nums[0]!, cachedTokens: nums[1]!, completionTokens: nums[2]!, decodeTokensPerSecond: nums[3]!, prefillMs: nums[4]! };
      const t = finite(u.ttftMs);
      if (t !== undefined && t >= 0) m.usage.ttftMs = t;
    }
  }
  return m;
}

function checkConversation(v: unknown, where: string): Conversation {
  if (!isObj(v)) throw new ImportError(`${where} is not an object.`);
  if (!Array.isArray(v.messages)) throw new ImportError(`${where} has no "messages" list.`);
  if (v.messages.length > IMPORT_LIMITS.messages) throw new ImportError(`${where} has more than ${IMPORT_LIMITS.messages} messages.`);
  const messages = v.messages.map((m, i) => checkMessage(m, `${where}, message ${i + 1}`));
  const now = Date.now();
  const title = typeof v.title === 'string' && v.title.trim() ? v.title.trim().slice(0, IMPORT_LIMITS.titleChars) : titleFrom(messages.find((m) => m.role === 'user')?.content ?? '');
  const c: Conversation = {
    id: typeof v.id === 'string' && /^[\w-]{1,80}$/.test(v.id) ? v.id : newId(),
    title,
    createdAt: finite(v.createdAt) ?? now,
    updatedAt: finite(v.updatedAt) ?? now,
    messages,
  };
  if (typeof v.model === 'string') c.model = v.model.slice(0, 500);
  if (typeof v.systemPrompt === 'string') c.systemPrompt = v.systemPrompt.slice(0, IMPORT_LIMITS.contentChars);
  return c;
}

/**
 * The conversations in an exported JSON text (this page's export, or one conversation object). Throws
 * ImportError, naming the first problem, when the text is not such a file.
 */
export function parseConversations(text: string): Conversation[] {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new ImportError(`The file is not JSON (${(e as Error).message}).`);
  }
  let list: unknown[];
  if (isObj(data) && data.format === EXPORT_FORMAT) {
    if (data.version !== EXPORT_VERSION) throw new ImportError(`The file is version ${JSON.stringify(data.version)} of the export format; this page reads version ${EXPORT_VERSION}.`);
    if (!Array.isArray(data.conversations)) throw new ImportError('The file has no "conversations" list.');
    list = data.conversations;
  } else if (isObj(data) && Array.isArray(data.messages)) {
    list = [data];
  } else {
    throw new ImportError('The file is not a WebDMS conversation export (no "format": "webdms-conversations" and no "messages").');
  }
  if (list.length === 0) throw new ImportError('The file holds no conversations.');
  if (list.length > IMPORT_LIMITS.conversations) throw new ImportError(`The file holds more than ${IMPORT_LIMITS.conversations} conversations.`);
  return list.map((c, i) => checkConversation(c, list.length > 1 ? `Conversation ${i + 1}` : 'The conversation'));
}
