/**
 * Sending a message: the user's turn goes into the conversation and the log, the model's reply streams in
 * beside the memory panel's live numbers, and the conversation is saved when it starts and when it ends.
 * (Stopping it is the composer's: app/composer.ts.)
 */
import { autoGrow, input, updateComposer } from './composer';
import { appendMessage, paintMessage, renderLog, scrollToBottom, setLogBusy } from './conversation-log';
import { renderConvList } from './conversations';
import { recordDecodeSpeed } from './adapter';
import { refreshKvMap, updateMemory, updateSpeed } from './memory-panel';
import { loadModel } from './model-loader';
import { client, currentSpec, settings, state, urlSeed, type Generation } from './state';
import { saveConversation, titleFrom, type Conversation, type StoredMessage } from './store';
import { streamPainter } from './stream-paint';
import type { ChatMessage, ChatRequest } from '../worker/protocol';

/** The conversation's system prompt (its own, else the settings' default for new conversations). */
export function systemPromptOf(conv: Conversation): string {
  return (conv.systemPrompt ?? settings.systemPrompt).trim();
}

function requestMessages(conv: Conversation): ChatMessage[] {
  const out: ChatMessage[] = [];
  const system = systemPromptOf(conv);
  if (system) out.push({ role: 'system', content: system });
  for (const m of conv.messages) {
    if (m.role === 'assistant' && (m.error || m.content === '')) continue;
    out.push({ role: m.role, content: m.content });
  }
  return out;
}

/** Whether a reply can start now (loading a lost model first); waits for a stopped reply to finish. */
async function readyToReply(): Promise<boolean> {
  if (state.modelState === 'lost') await loadModel(state.loadedSpec || currentSpec());
  if (state.modelState !== 'ready') return false;
  // A stopped reply may still be finishing its last token in the worker.
  if (state.generation) await state.generation.done;
  return true;
}

export async function send(): Promise<void> {
  if (!input.value.trim()) return;
  if (!(await readyToReply())) return;
  const text = input.value.trim();
  if (!text) return;
  input.value = '';
  autoGrow();
  // The conversation this reply belongs to (another one may be open by the time it ends).
  const owner = state.conv;
  const user: StoredMessage = { role: 'user', content: text, at: Date.now() };
  if (owner.messages.length === 0) owner.title = titleFrom(text);
  owner.messages.push(user);
  appendMessage(user, false);
  await reply(owner);
}

/** Generates the last assistant reply again: the old one is replaced. */
export async function regenerate(): Promise<void> {
  if (state.generation && !state.generation.stopped) return;
  if (!(await readyToReply())) return;
  const owner = state.conv;
  const last = owner.messages[owner.messages.length - 1];
  if (!last || last.role !== 'assistant') return;
  owner.messages.pop();
  renderLog();
  await reply(owner);
}

/**
 * Replaces the user message at `index` with `text` and asks again: the turns after it are dropped (they
 * answered the old text).
 */
export async function editAndResend(index: number, text: string): Promise<void> {
  const t = text.trim();
  if (!t) return;
  if (state.generation && !state.generation.stopped) return;
  if (!(await readyToReply())) return;
  const owner = state.conv;
  if (owner.messages[index]?.role !== 'user') return;
  owner.messages = owner.messages.slice(0, index);
  if (index === 0) owner.title = titleFrom(t);
  owner.messages.push({ role: 'user', content: t, at: Date.now() });
  renderLog();
  await reply(owner);
}

/** Streams the model's reply to `owner`'s messages into the log and the conversation. */
async function reply(owner: Conversation): Promise<void> {
  owner.model = state.loadedSpec;
  const answer: StoredMessage = { role: 'assistant', content: '', at: Date.now() };
  const req: ChatRequest = {
    messages: requestMessages(owner),
    temperature: settings.temperature,
    topP: settings.topP,
    topK: settings.topK,
    maxTokens: settings.maxTokens,
    seed: urlSeed,
    chains: settings.chains > 1 ? settings.chains : undefined,
  };
  if (req.chains) answer.chains = Array.from({ length: req.chains }, () => ({ content: '' }));
  owner.messages.push(answer);
  const el = appendMessage(answer, true);
  scrollToBottom(true);
  void saveConversation(owner).then(renderConvList, () => undefined);

  let deltas = 0;
  const gen: Generation = { msg: answer, el, stopped: false, done: Promise.resolve() };
  // Deltas are fire-and-forget callbacks from the worker: the last ones can arrive after chat() has
  // resolved. Once it has, they must not repaint the finished answer as streaming.
  let finished = false;
  const painter = streamPainter(() => {
    if (gen.stopped || finished) return;
    paintMessage(el, answer, true);
    scrollToBottom();
  });
  setLogBusy(true);
  gen.done = (async () => {
    // Time to first token, as the user waits for it: from the request to the first streamed text.
    const sent = performance.now();
    let firstTokenMs: number | undefined;
    try {
      const res = await client.chat(req, (d) => {
        if (gen.stopped || finished) return;
        firstTokenMs ??= performance.now() - sent;
        if (d.chain !== undefined && answer.chains?.[d.chain]) answer.chains[d.chain].content += d.content;
        else answer.content += d.content;
        updateMemory(d.kv ?? null, d.decodeTokensPerSecond);
        if (++deltas % 16 === 0) void refreshKvMap();
        painter.schedule();
      });
      answer.content = res.content;
      answer.finishReason = gen.stopped ? 'abort' : res.finishReason;
      if (res.chains) answer.chains = res.chains.map((c) => ({ content: c.content, answer: c.answer, finishReason: c.finishReason }));
      answer.vote = res.vote;
      answer.dropped = res.dropped;
      answer.usage = {
        promptTokens: res.promptTokens,
        cachedTokens: res.cachedTokens ?? 0,
        completionTokens: res.completionTokens,
        decodeTokensPerSecond: res.timing.decodeTokensPerSecond,
        prefillMs: res.timing.prefillMs,
        ttftMs: firstTokenMs,
      };
      if (state.modelInfo) recordDecodeSpeed(res.timing.decodeTokensPerSecond, state.modelInfo.weightBytes);
      updateSpeed(answer.usage);
      updateMemory(res.kv, res.timing.decodeTokensPerSecond);
      void refreshKvMap();
    } catch (e) {
      answer.error = (e as Error)?.message ?? String(e);
      if (gen.stopped) answer.finishReason = 'abort';
    } finally {
      finished = true;
      painter.cancel();
      if (state.generation === gen) state.generation = null;
      if (el.isConnected) paintMessage(el, answer, false);
      setLogBusy(false);
      updateComposer();
      await saveConversation(owner).catch(() => undefined);
      void renderConvList();
    }
  })();
  state.generation = gen;
  updateComposer();
  await gen.done;
}
