/**
 * worker/chat-session.ts without a browser or GPU: the real tokenizer and chat template of the golden
 * qwen3 fixture, and a scripted engine that keeps its cache the way worker/engine/engine.ts does
 * (continue when the prompt extends the cached tokens, else start over; the cache holds prompt + all
 * generated ids but the last one).
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { ChatSession, type ChatEngine } from '../worker/chat-session';
import type { GenerateResult } from '../worker/engine/engine';
import { ModelTokenizer } from '../worker/model/tokenizer';
import type { ChatDelta, ChatMessage, KvStats, SamplingOptions } from '../worker/protocol';

const dir = new URL('./fixtures/golden/qwen3/', import.meta.url);
const json = (f: string) => JSON.parse(readFileSync(new URL(f, dir), 'utf8'));
const tokenizer = ModelTokenizer.fromJson(json('tokenizer.json'), json('tokenizer_config.json'));
const IM_END = tokenizer.tokenToId('<|im_end|>')!;

const stats = (seen: number): KvStats => ({
  policy: 'full',
  tokensSeen: seen,
  residentTokens: seen * 6,
  peakTokens: seen * 6,
  peakTokensFull: seen * 6,
  tokenReads: 0,
  tokenReadsFull: 0,
  compression: 1,
  peakBytes: seen * 6 * 256,
  allocatedBytes: 1 << 20,
  budgetEvictions: 0,
});

class ScriptedEngine implements ChatEngine {
  readonly tokenizer = tokenizer;
  readonly config = { eosTokenIds: [IM_END] };
  readonly info = { maxContext: 512 };
  cached: number[] = [];
  get cachedTokens(): readonly number[] {
    return this.cached;
  }
  /** What each generate call saw: the prompt, and how many of its tokens were continued from the cache. */
  calls: { prompt: number[]; continued: number }[] = [];
  /** Replies to give, as text; a reply ends with <|im_end|> unless cut by maxTokens or abort. */
  replies: string[] = [];
  /** Milliseconds between tokens. */
  tokenDelay = 0;
  /** Throw (as non-finite logits do) after this many tokens of the next reply. */
  failAfter = Infinity;
  /** kvStats() rejects (a read-back that failed). */
  statsFail = false;

  async generate(promptIds: number[], opts: SamplingOptions & { signal?: AbortSignal; onToken?: (id: number) => void }): Promise<GenerateResult> {
    const extends_ = this.cached.length <= promptIds.length && this.cached.every((t, i) => promptIds[i] === t);
    this.calls.push({ prompt: promptIds.slice(), continued: extends_ ? this.cached.length : 0 });
    if (!extends_) this.cached = [];
    this.cached = promptIds.slice();
    const reply = tokenizer.encode(this.replies.shift() ?? 'ok', false).concat(IM_END);
    const out: number[] = [];
    let finishReason: GenerateResult['finishReason'] = 'length';
    for (const id of reply) {
      if (this.tokenDelay) await new Promise((r) => setTimeout(r, this.tokenDelay));
      if (out.length >= this.failAfter) throw new Error(`the model produced non-finite logits at token ${out.length + 1}`);
      out.push(id);
      opts.onToken?.(id);
      if (id === IM_END) {
        finishReason = 'stop';
        break;
      }
      if (opts.signal?.aborted) {
        finishReason = 'abort';
        break;
      }
      if (out.length >= (opts.maxTokens ?? 256)) break;
      this.cached.push(id);
    }
    return { ids: out, finishReason, promptTokens: promptIds.length, timing: { prefillMs: 1, decodeMs: 1, decodeTokensPerSecond: 1 }, kv: stats(this.cached.length) };
  }
  async kvStats(): Promise<KvStats> {
    if (this.statsFail) throw new Error('read-back failed');
    return stats(this.cached.length);
  }
  reset(): void {
    this.cached = [];
  }
}

const render = (m: ChatMessage[]) => tokenizer.applyChatTemplate(m, { addGenerationPrompt: true });
const text = (ids: number[]) => tokenizer.decode(ids, false);

describe('chat session', () => {
  it('a failed reply rejects only after the page has taken the text generated before the failure', async () => {
    const engine = new ScriptedEngine();
    engine.replies = ['Hello there, friend.'];
    engine.failAfter = 3;
    const s = new ChatSession(engine);
    // As through Comlink: each delta reaches the page later, on a channel of its own.
    let sent = 0;
    const taken: string[] = [];
    const onDelta = (d: ChatDelta) => {
      sent++;
      return new Promise<void>((r) => setTimeout(() => (taken.push(d.content), r()), 30));
    };
    let takenAtError = -1;
    await s.chat({ messages: [{ role: 'user', content: 'hi' }], maxTokens: 64 }, onDelta).catch((e: Error) => {
      takenAtError = taken.length;
      expect(e.message).toMatch(/non-finite logits at token 4/);
    });
    expect(sent).toBeGreaterThan(0);
    expect(takenAtError).toBe(sent);
    expect(taken.join('')).toBe(text(tokenizer.encode('Hello there, friend.', false).slice(0, 3)));
  });

  it('streams the text even when the cache figures cannot be read, and the failure text too', async () => {
    const engine = new ScriptedEngine();
    engine.statsFail = true;
    engine.replies = ['Hello there, friend.', 'Second reply.'];
    engine.failAfter = 3;
    const s = new ChatSession(engine);
    const deltas: ChatDelta[] = [];
    await expect(s.chat({ messages: [{ role: 'user', content: 'hi' }], maxTokens: 64 }, (d) => deltas.push(d))).rejects.toThrow(/non-finite/);
    expect(deltas.map((d) => d.content).join('')).toBe(text(tokenizer.encode('Hello there, friend.', false).slice(0, 3)));
    expect(deltas.every((d) => d.kv === undefined)).toBe(true);
    engine.failAfter = Infinity;
    deltas.length = 0;
    const res = await s.chat({ messages: [{ role: 'user', content: 'again' }], maxTokens: 64 }, (d) => deltas.push(d));
    expect(deltas.map((d) => d.content).join('')).toBe(res.content);
    expect(res.content).toBe('Second reply.');
  });

  it('streams deltas whose text is the reply, without the end-of-turn token', async () => {
    const engine = new ScriptedEngine();
    engine.replies = ['Hello there, friend.'];
    const s = new ChatSession(engine);
    const deltas: ChatDelta[] = [];
    const res = await s.chat({ messages: [{ role: 'user', content: 'hi' }], maxTokens: 64 }, (d) => deltas.push(d));
    expect(res.content).toBe('Hello there, friend.');
    expect(deltas.map((d) => d.content).join('')).toBe(res.content);
    expect(deltas.length).toBeGreaterThan(3);
    expect(deltas.every((d) => d.kv?.policy === 'full')).toBe(true);
    expect(res.finishReason).toBe('stop');
    expect(res.cachedTokens).toBe(0);
    // The first prompt is exactly the template's rendering.
    expect(text(engine.calls[0].prompt)).toBe(render([{ role: 'user', content: 'hi' }]));
  });

  it('a follow-up turn continues the cache, and its prompt is the template rendering', async () => {
    const engine = new ScriptedEngine();
    engine.replies = ['The sky is blue.', 'Because of scattering.'];
    const s = new ChatSession(engine);
    const m1: ChatMessage[] = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'What colour is the sky?' },
    ];
    const r1 = await s.chat({ messages: m1, maxTokens: 64 }, () => {});
    const m2: ChatMessage[] = [...m1, { role: 'assistant', content: r1.content }, { role: 'user', content: 'Why?' }];
    const r2 = await s.chat({ messages: m2, maxTokens: 64 }, () => {});
    expect(r2.content).toBe('Because of scattering.');
    const call = engine.calls[1];
    // Everything the engine held was reused...
    expect(call.continued).toBeGreaterThan(engine.calls[0].prompt.length);
    expect(r2.cachedTokens).toBe(call.continued);
    // ...and the prompt it got is what the chat template renders for the whole conversation.
    expect(text(call.prompt)).toBe(render(m2));
  });

  it('a reply with a <think> block is continued as generated, not re-rendered', async () => {
    const engine = new ScriptedEngine();
    engine.replies = ['<think>\nsmall sum\n</think>\n\nIt is 4.', 'Yes.'];
    const s = new ChatSession(engine);
    const m1: ChatMessage[] = [{ role: 'user', content: '2+2?' }];
    const r1 = await s.chat({ messages: m1, maxTokens: 64 }, () => {});
    expect(r1.content).toContain('<think>');
    const m2: ChatMessage[] = [...m1, { role: 'assistant', content: r1.content }, { role: 'user', content: 'Sure?' }];
    await s.chat({ messages: m2, maxTokens: 64 }, () => {});
    // The template drops earlier think blocks, so re-rendering would throw the cache away; the session keeps it.
    expect(render(m2)).not.toContain('small sum');
    expect(engine.calls[1].continued).toBeGreaterThan(0);
    expect(text(engine.calls[1].prompt)).toContain('small sum');
    expect(text(engine.calls[1].prompt).endsWith('<|im_start|>user\nSure?<|im_end|>\n<|im_start|>assistant\n')).toBe(true);
  });

  it('abort stops mid-reply, keeps the engine usable, and the next turn closes the cut reply', async () => {
    const engine = new ScriptedEngine();
    engine.tokenDelay = 5;
    engine.replies = ['one two three four five six seven eight nine ten eleven twelve', 'fine'];
    const s = new ChatSession(engine);
    const m1: ChatMessage[] = [{ role: 'user', content: 'count' }];
    let n = 0;
    const p = s.chat({ messages: m1, maxTokens: 200 }, () => {
      if (++n === 3) s.abort();
    });
    const r1 = await p;
    expect(r1.finishReason).toBe('abort');
    expect(r1.completionTokens).toBeLessThan(6);
    expect(s.busy).toBe(false);
    const m2: ChatMessage[] = [...m1, { role: 'assistant', content: r1.content }, { role: 'user', content: 'go on' }];
    const r2 = await s.chat({ messages: m2, maxTokens: 64 }, () => {});
    expect(r2.content).toBe('fine');
    expect(engine.calls[1].continued).toBeGreaterThan(0);
    expect(text(engine.calls[1].prompt)).toBe(render(m2));
  });

  it('an edited history or another conversation starts over', async () => {
    const engine = new ScriptedEngine();
    engine.replies = ['A.', 'B.'];
    const s = new ChatSession(engine);
    const m1: ChatMessage[] = [{ role: 'user', content: 'first' }];
    const r1 = await s.chat({ messages: m1, maxTokens: 64 }, () => {});
    const edited: ChatMessage[] = [{ role: 'user', content: 'first, edited' }, { role: 'assistant', content: r1.content }, { role: 'user', content: 'next' }];
    const r2 = await s.chat({ messages: edited, maxTokens: 64 }, () => {});
    expect(r2.cachedTokens).toBe(0);
    expect(engine.calls[1].continued).toBe(0);
    expect(text(engine.calls[1].prompt)).toBe(render(edited));
  });

  it('a conversation longer than the context drops its oldest turns, and says how much', async () => {
    const engine = new ScriptedEngine();
    (engine.info as { maxContext: number }).maxContext = 120;
    const s = new ChatSession(engine);
    const long = 'word '.repeat(20).trim();
    const msgs: ChatMessage[] = [
      { role: 'system', content: 'sys' },
      { role: 'user', content: `old question ${long}` },
      { role: 'assistant', content: `old answer ${long}` },
      { role: 'user', content: 'new question' },
    ];
    const r = await s.chat({ messages: msgs, maxTokens: 32 }, () => {});
    // The two oldest messages went; the tokens dropped are the full conversation's beyond the prompt sent.
    expect(r.dropped).toEqual({ messages: 2, tokens: tokenizer.encode(render(msgs), false).length - engine.calls[0].prompt.length });
    expect(r.dropped!.tokens).toBeGreaterThan(40);
    // A turn that fits says nothing.
    const fits = await new ChatSession(new ScriptedEngine()).chat({ messages: [{ role: 'user', content: 'hi' }], maxTokens: 8 }, () => {});
    expect(fits.dropped).toBeUndefined();
    const prompt = text(engine.calls[0].prompt);
    expect(engine.calls[0].prompt.length).toBeLessThanOrEqual(120 - 32);
    expect(prompt).toContain('sys');
    expect(prompt).toContain('new question');
    expect(prompt).not.toContain('old question');
    // A single message that cannot fit is an error, not a silent cut.
    await expect(s.chat({ messages: [{ role: 'user', content: 'word '.repeat(200) }], maxTokens: 32 }, () => {})).rejects.toThrow(/too long/);
  });
});

it('max tokens larger than the context is cut to the room left, not refused', async () => {
  const engine = new ScriptedEngine();
  (engine.info as { maxContext: number }).maxContext = 64;
  let asked = 0;
  const generate = engine.generate.bind(engine);
  engine.generate = (ids, opts) => {
    asked = opts.maxTokens ?? 0;
    return generate(ids, opts);
  };
  const s = new ChatSession(engine);
  const r = await s.chat({ messages: [{ role: 'user', content: 'hi' }], maxTokens: 512 }, () => {});
  expect(r.finishReason).toBe('stop');
  expect(asked).toBe(64 - engine.calls[0].prompt.length);
});
