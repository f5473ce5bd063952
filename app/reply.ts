/**
 * Sending a message: the user's turn goes into the conversation and the log, the model's reply streams in
 * beside the memory panel's live numbers, and the conversation is saved when it starts and when it ends.
 * (Stopping it is the composer's: app/composer.ts.)
 */
import { autoGrow, input, updateComposer } from './composer';
import { appendMessage, paintMessage, scrollToBottom, setLogBusy } from './conversation-log';
import { renderConvList } from './conversations';
import { refreshKvMap, updateMemory } from './memory-panel';
import { loadModel } from './model-loader';
import { client, currentSpec, settings, state, urlSeed, type Generation } from './state';
import { saveConversation, titleFrom, type Conversation, type StoredMessage } from './store';
import { streamPainter } from './stream-paint';
import type { ChatMessage, ChatRequest } from '../worker/protocol';

function requestMessages(conv: Conversation): ChatMessage[] {
  const out: ChatMessage[] = [];
  if (settings.systemPrompt.trim()) out.push({ role: 'system', content: settings.systemPrompt.trim() });
  for (const m of conv.messages) {
    if (m.role === 'assistant' && (m.error || m.content === '')) continue;
    out.push({ role: m.role, content: m.content });
  }
  return out;
}

export async function send(): Promise<void> {
  if (!input.value.trim()) return;
  if (state.modelState === 'lost') await loadModel(state.loadedSpec || currentSpec());
  const text = input.value.trim();
  if (!text || state.modelState !== 'ready') return;
  // A stopped reply may still be finishing its last token in the worker.
  if (state.generation) await state.generation.done;
  input.value = '';
  autoGrow();
  // The conversation this reply belongs to (another one may be open by the time it ends).
  const owner = state.conv;
  const user: StoredMessage = { role: 'user', content: text, at: Date.now() };
  if (owner.messages.length === 0) owner.title = titleFrom(text);
  owner.model = state.loadedSpec;
  owner.messages.push(user);
  appendMessage(user, false);
  const reply: StoredMessage = { role: 'assistant', content: '', at: Date.now() };
  const req: ChatRequest = {
    messages: requestMessages(owner),
    temperature: settings.temperature,
    topP: settings.topP,
    topK: settings.topK,
    maxTokens: settings.maxTokens,
    seed: urlSeed,
    chains: settings.chains > 1 ? settings.chains : undefined,
  };
  if (req.chains) reply.chains = Array.from({ length: req.chains }, () => ({ content: '' }));
  owner.messages.push(reply);
  const el = appendMessage(reply, true);
  scrollToBottom(true);
  void saveConversation(owner).then(renderConvList, () => undefined);

  let deltas = 0;
  const gen: Generation = { msg: reply, el, stopped: false, done: Promise.resolve() };
  // Deltas are fire-and-forget callbacks from the worker: the last ones can arrive after chat() has
  // resolved. Once it has, they must not repaint the finished reply as streaming.
  let finished = false;
  const painter = streamPainter(() => {
    if (gen.stopped || finished) return;
    paintMessage(el, reply, true);
    scrollToBottom();
  });
  setLogBusy(true);
  gen.done = (async () => {
    try {
      const res = await client.chat(req, (d) => {
        if (gen.stopped || finished) return;
        if (d.chain !== undefined && reply.chains?.[d.chain]) reply.chains[d.chain].content += d.content;
        else reply.content += d.content;
        updateMemory(d.kv, d.decodeTokensPerSecond);
        if (++deltas % 16 === 0) void refreshKvMap();
        painter.schedule();
      });
      reply.content = res.content;
      reply.finishReason = gen.stopped ? 'abort' : res.finishReason;
      if (res.chains) reply.chains = res.chains.map((c) => ({ content: c.content, answer: c.answer, finishReason: c.finishReason }));
      reply.vote = res.vote;
      reply.dropped = res.dropped;
      reply.usage = {
        promptTokens: res.promptTokens,
        cachedTokens: res.cachedTokens ?? 0,
        completionTokens: res.completionTokens,
        decodeTokensPerSecond: res.timing.decodeTokensPerSecond,
        prefillMs: res.timing.prefillMs,
      };
      updateMemory(res.kv, res.timing.decodeTokensPerSecond);
      void refreshKvMap();
    } catch (e) {
      reply.error = (e as Error)?.message ?? String(e);
      if (gen.stopped) reply.finishReason = 'abort';
    } finally {
      finished = true;
      painter.cancel();
      if (state.generation === gen) state.generation = null;
      if (el.isConnected) paintMessage(el, reply, false);
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
