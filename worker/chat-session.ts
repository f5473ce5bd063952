/**
 * The chat logic the worker runs on top of one engine: render the chat template, encode, continue the
 * cached conversation across turns, stream-decode deltas, abort, and attach live KV stats to each delta.
 *
 * It depends on the engine only through the structural {@link ChatEngine} interface, so it can be
 * exercised with a fake engine (test/chat-session.test.ts) as well as the real one (worker/worker.ts).
 *
 * Reusing the cache across turns. Chat templates do not render a conversation as a growing string:
 * Qwen3's, for one, drops the <think> part of earlier assistant turns, so the text of turn n+1 is not
 * the text of turn n plus something. We therefore do not re-render the history. When the new request
 * is the previous one plus our reply plus new messages, the prompt is built from token ids:
 *   previous prompt ids + generated ids + bridge
 * where the bridge closes the assistant turn and renders the new messages, as the template renders
 * them after an assistant turn (found with a sentinel reply, see {@link ChatSession.bridgeText}).
 * The engine then continues its cache from the tokens it already holds. Any other request (edited
 * history, another conversation) is rendered in full and the engine starts over.
 */
import type { GenerateResult } from './engine/engine';
import { extractAnswer, vote } from './hyperscale/answers';
import { fitConversation } from './fit-conversation';
import type { ChainReply, ChatDelta, ChatMessage, ChatRequest, ChatResult, ContextDropped, KvStats, SamplingOptions, Timing } from './protocol';

export interface ChatTokenizer {
  applyChatTemplate(messages: ChatMessage[], opts: { addGenerationPrompt: boolean }): string;
  encode(text: string, addSpecial?: boolean): number[];
  decode(ids: number[]): string;
  createStreamDecoder(): { push(id: number): string; flush(): string };
}

/** What the session needs of worker/engine/engine.ts's Engine. */
export interface ChatEngine {
  readonly tokenizer: ChatTokenizer | null;
  readonly config: { eosTokenIds: number[] };
  readonly info: { maxContext: number };
  /** Tokens whose K/V the engine holds, in order (when it tells). */
  readonly cachedTokens?: readonly number[];
  generate(promptIds: number[], opts: SamplingOptions & { signal?: AbortSignal; onToken?: (id: number) => void }): Promise<GenerateResult>;
  kvStats(): Promise<KvStats>;
  reset(): void;
}

/** Parallel chains from one prompt (worker/hyperscale/chains.ts's generateChains, bound to the engine). */
export type ChainsRunner = (
  promptIds: number[],
  opts: SamplingOptions & { chains: number; signal?: AbortSignal; onToken?: (chain: number, id: number) => void },
) => Promise<{ chains: { ids: number[]; finishReason: 'stop' | 'length' | 'abort'; meanLogProb: number }[]; timing: Timing; kv: KvStats }>;

export class ChatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ChatError';
  }
}

/** What the cache holds after a turn, as the session sees it. */
interface Cached {
  /** The request's messages. */
  messages: ChatMessage[];
  /** The reply text we returned for them. */
  reply: string;
  /** Prompt ids followed by generated ids: what the engine continues from. */
  ids: number[];
  finishReason: 'stop' | 'length' | 'abort';
}

const SENTINEL = 'WEBDMSSENTINELREPLY7F3A';
/** Live KV stats are refreshed at most this often while generating (each refresh reads back counters). */
const KV_REFRESH_MS = 400;
export const DEFAULT_MAX_TOKENS = 512;

const sameMessage = (a: ChatMessage, b: ChatMessage): boolean => a.role === b.role && a.content === b.content;

export class ChatSession {
  private cached: Cached | null = null;
  private controller: AbortController | null = null;
  private running: Promise<unknown> | null = null;
  private lastKv: KvStats | undefined;

  /** `runChains` serves chains-mode requests (ChatRequest.chains > 1); `maxChains` is what the engine was sized for. */
  constructor(
    private readonly engine: ChatEngine,
    private readonly runChains?: ChainsRunner,
    private readonly maxChains = 1,
  ) {}

  /** Stops the running reply at the next token. The engine and the cache stay usable. */
  abort(): void {
    this.controller?.abort();
  }

  /** Forgets the cached conversation (the engine starts over on the next turn). */
  reset(): void {
    this.abort();
    this.cached = null;
    this.engine.reset();
  }

  /** After a failed generation the cache state is unknown: empty it (the engine may be gone: device lost). */
  private resetAfterFailure(): void {
    try {
      this.engine.reset();
    } catch {
      /* nothing to reset */
    }
  }

  get busy(): boolean {
    return this.running !== null;
  }

  /**
   * Streams a reply to `req`. A call while another reply is running aborts that one first. A failed reply
   * rejects only once the page has run the deltas sent before the failure (see deltaSender).
   */
  async chat(req: ChatRequest, onDelta: (d: ChatDelta) => unknown): Promise<ChatResult> {
    while (this.running) {
      this.abort();
      await this.running.catch(() => undefined);
    }
    const deltas = deltaSender(onDelta);
    const run = (req.chains ?? 1) > 1 ? this.runChainsMode(req, deltas.send) : this.run(req, deltas.send);
    this.running = run;
    try {
      return await run;
    } catch (e) {
      await deltas.settled();
      throw e;
    } finally {
      if (this.running === run) this.running = null;
    }
  }

  private async run(req: ChatRequest, onDelta: (d: ChatDelta) => void): Promise<ChatResult> {
    const tok = this.engine.tokenizer;
    if (!tok) throw new ChatError('This model has no tokenizer (tokenizer.json), so it cannot chat.');
    if (!Array.isArray(req.messages) || req.messages.length === 0) throw new ChatError('The request has no messages.');
    const wanted = Math.max(1, Math.floor(req.maxTokens ?? DEFAULT_MAX_TOKENS));
    const maxContext = this.engine.info.maxContext;
    // Room kept for the reply when fitting the prompt: maxTokens, but never more than half the context.
    const reserve = Math.min(wanted, Math.floor(maxContext / 2));
    const { ids: promptIds, dropped } = this.promptFor(req.messages, maxContext - reserve);
    const maxTokens = Math.max(1, Math.min(wanted, maxContext - promptIds.length));
    const cachedTokens = this.reusable(promptIds);
    const eos = new Set(this.engine.config.eosTokenIds);

    const controller = new AbortController();
    this.controller = controller;
    const decoder = tok.createStreamDecoder();
    let content = '';
    let generated = 0;
    let firstTokenAt = 0;
    let lastTokenAt = 0;
    let kvInFlight = false;
    let kvFetchedAt = 0;
    this.lastKv = await this.engine.kvStats().catch(() => this.lastKv);

    const refreshKv = () => {
      if (kvInFlight || performance.now() - kvFetchedAt < KV_REFRESH_MS) return;
      kvInFlight = true;
      kvFetchedAt = performance.now();
      // Deferred so the read-back is queued after the engine's current step, not inside it.
      setTimeout(() => {
        this.engine
          .kvStats()
          .then((s) => (this.lastKv = s))
          .catch(() => undefined)
          .finally(() => (kvInFlight = false));
      }, 0);
    };

    const onToken = (id: number) => {
      const now = performance.now();
      if (generated === 0) firstTokenAt = now;
      lastTokenAt = now;
      generated++;
      const text = eos.has(id) ? '' : decoder.push(id);
      content += text;
      refreshKv();
      const tps = generated > 1 ? ((generated - 1) * 1000) / Math.max(1, lastTokenAt - firstTokenAt) : 0;
      onDelta({ content: text, tokenIds: [id], kv: this.lastKv, decodeTokensPerSecond: tps });
    };

    let result: GenerateResult;
    try {
      result = await this.engine.generate(promptIds, {
        maxTokens,
        temperature: req.temperature,
        topP: req.topP,
        topK: req.topK,
        seed: req.seed,
        signal: controller.signal,
        onToken,
      });
    } catch (e) {
      // What was generated before the failure (e.g. non-finite logits) stays the reply's: bytes the
      // decoder still held go out before the error.
      const tail = decoder.flush();
      if (tail) onDelta({ content: tail, tokenIds: [], kv: this.lastKv, decodeTokensPerSecond: 0 });
      // The cache state is unknown after a failure: start over next time.
      this.cached = null;
      this.resetAfterFailure();
      throw e;
    } finally {
      if (this.controller === controller) this.controller = null;
    }
    const tail = decoder.flush();
    if (tail) {
      content += tail;
      onDelta({ content: tail, tokenIds: [], kv: result.kv, decodeTokensPerSecond: result.timing.decodeTokensPerSecond });
    }
    this.lastKv = result.kv;
    this.cached = { messages: req.messages.map((m) => ({ role: m.role, content: m.content })), reply: content, ids: promptIds.concat(result.ids), finishReason: result.finishReason };
    return {
      content,
      ...(dropped ? { dropped } : {}),
      finishReason: result.finishReason,
      promptTokens: promptIds.length,
      completionTokens: result.ids.filter((id) => !eos.has(id)).length,
      cachedTokens,
      kv: result.kv,
      timing: result.timing,
    };
  }

  /**
   * Chains mode: W chains sampled together from the full prompt, each streamed as deltas tagged with its
   * chain, then combined by the vote (majority over stated answers, else the best mean log-prob). The
   * engine's cache does not hold a conversation afterwards, so the next turn starts over.
   */
  private async runChainsMode(req: ChatRequest, onDelta: (d: ChatDelta) => void): Promise<ChatResult> {
    const tok = this.engine.tokenizer;
    if (!tok) throw new ChatError('This model has no tokenizer (tokenizer.json), so it cannot chat.');
    if (!Array.isArray(req.messages) || req.messages.length === 0) throw new ChatError('The request has no messages.');
    const W = Math.floor(req.chains ?? 1);
    if (!this.runChains || W > this.maxChains) {
      throw new ChatError(`${W} parallel chains were asked for, but the model was loaded for ${this.maxChains}; reload it with more chains.`);
    }
    const wanted = Math.max(1, Math.floor(req.maxTokens ?? DEFAULT_MAX_TOKENS));
    const maxContext = this.engine.info.maxContext;
    const { ids: promptIds, dropped } = fitConversation(tok, req.messages, maxContext - Math.min(wanted, Math.floor(maxContext / 2)));
    const maxTokens = Math.max(1, Math.min(wanted, maxContext - promptIds.length));
    const eos = new Set(this.engine.config.eosTokenIds);
    this.cached = null;
    const controller = new AbortController();
    this.controller = controller;
    const decoders = Array.from({ length: W }, () => tok.createStreamDecoder());
    const texts: string[] = Array(W).fill('');
    const t0 = performance.now();
    let tokens = 0;
    const kv0 = this.lastKv ?? (await this.engine.kvStats().catch(() => undefined));
    let r: Awaited<ReturnType<ChainsRunner>>;
    try {
      r = await this.runChains(promptIds, {
        chains: W,
        maxTokens,
        temperature: req.temperature,
        topP: req.topP,
        topK: req.topK,
        seed: req.seed,
        signal: controller.signal,
        onToken: (chain, id) => {
          tokens++;
          const text = eos.has(id) ? '' : decoders[chain].push(id);
          texts[chain] += text;
          const tps = (tokens * 1000) / Math.max(1, performance.now() - t0);
          onDelta({ content: text, tokenIds: [id], kv: kv0, decodeTokensPerSecond: tps, chain });
        },
      });
    } catch (e) {
      this.resetAfterFailure();
      throw e;
    } finally {
      if (this.controller === controller) this.controller = null;
    }
    decoders.forEach((d, chain) => {
      const tail = d.flush();
      if (!tail) return;
      texts[chain] += tail;
      onDelta({ content: tail, tokenIds: [], kv: r.kv, decodeTokensPerSecond: r.timing.decodeTokensPerSecond, chain });
    });
    this.lastKv = r.kv;
    const chains: ChainReply[] = r.chains.map((c, i) => ({
      content: texts[i],
      finishReason: c.finishReason,
      completionTokens: c.ids.filter((id) => !eos.has(id)).length,
      answer: extractAnswer(texts[i]),
      meanLogProb: c.meanLogProb,
    }));
    const v = vote(chains);
    const pick = chains[v.chain];
    return {
      content: pick.content,
      ...(dropped ? { dropped } : {}),
      finishReason: pick.finishReason,
      promptTokens: promptIds.length,
      completionTokens: chains.reduce((n, c) => n + c.completionTokens, 0),
      cachedTokens: 0,
      kv: r.kv,
      timing: r.timing,
      chains,
      vote: v,
    };
  }

  /** How many of `promptIds` the engine will continue from its cache instead of prefilling. */
  private reusable(promptIds: number[]): number {
    const held = this.engine.cachedTokens;
    if (!held) return 0;
    if (held.length > promptIds.length) return 0;
    for (let i = 0; i < held.length; i++) if (held[i] !== promptIds[i]) return 0;
    return held.length;
  }

  /**
   * The prompt ids for `messages`, and how many of them extend the previous turn's tokens.
   * Exposed for tests; `budget` is the most prompt tokens allowed.
   */
  promptFor(messages: ChatMessage[], budget: number): { ids: number[]; cachedTokens: number; dropped: ContextDropped | null } {
    const tok = this.engine.tokenizer!;
    const c = this.cached;
    const n = c ? c.messages.length : 0;
    if (c && messages.length > n + 1 && c.messages.every((m, i) => sameMessage(m, messages[i])) && sameMessage(messages[n], { role: 'assistant', content: c.reply })) {
      const bridge = this.bridgeText(messages.slice(n + 1));
      if (bridge !== null) {
        let bridgeIds = tok.encode(bridge, false);
        const last = c.ids[c.ids.length - 1];
        const eos = this.engine.config.eosTokenIds;
        // The reply already ends with the token that closes the turn: do not close it twice.
        if (c.finishReason === 'stop' && eos.includes(last) && bridgeIds[0] === last) bridgeIds = bridgeIds.slice(1);
        const ids = c.ids.concat(bridgeIds);
        if (ids.length <= budget) return { ids, cachedTokens: c.ids.length, dropped: null };
      }
    }
    return { ...fitConversation(tok, messages, budget), cachedTokens: 0 };
  }

  /**
   * The text the template puts after an assistant reply's content and before the generation prompt
   * that follows `extra`: the end of the assistant turn, `extra` rendered, and the generation prompt.
   * Found by rendering a conversation whose last reply is a sentinel. Null when the template does
   * not render the sentinel reply the same way with and without the following messages.
   */
  bridgeText(extra: ChatMessage[]): string | null {
    const tok = this.engine.tokenizer!;
    const head: ChatMessage[] = [
      { role: 'user', content: 'hi' },
      { role: 'assistant', content: SENTINEL },
    ];
    let closed: string;
    let continued: string;
    try {
      closed = tok.applyChatTemplate(head, { addGenerationPrompt: false });
      continued = tok.applyChatTemplate(head.concat(extra), { addGenerationPrompt: true });
    } catch {
      return null;
    }
    const a = closed.lastIndexOf(SENTINEL);
    const b = continued.indexOf(SENTINEL);
    if (a < 0 || b < 0) return null;
    const closing = closed.slice(a + SENTINEL.length);
    const rest = continued.slice(b + SENTINEL.length);
    if (!rest.startsWith(closing)) return null;
    return rest;
  }
}

/**
 * How long a failed reply waits for the page to take its last deltas (a page that went away never answers).
 * Generous: with software WebGPU on a loaded machine the page's thread can be held for seconds (2 s was not
 * always enough on the 2-core CI machine: the e2e non-finite test saw the error without the text before it).
 */
const DELTA_SETTLE_MS = 10_000;

/**
 * The page's delta callback, called from the worker through Comlink: each call travels on a channel of its
 * own and its promise settles once the page has run it, so the reply's error (on the worker's channel) could
 * reach the page before the last text did, and the page ignores deltas after the reply ended. `settled`
 * resolves once the page has run every delta sent so far (they run in order), or after DELTA_SETTLE_MS.
 */
function deltaSender(onDelta: (d: ChatDelta) => unknown): { send: (d: ChatDelta) => void; settled: () => Promise<void> } {
  let last: Promise<unknown> = Promise.resolve();
  return {
    send: (d) => {
      last = Promise.resolve(onDelta(d)).catch(() => undefined);
    },
    settled: () => new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, DELTA_SETTLE_MS);
      void last.then(() => {
        clearTimeout(timer);
        resolve();
      });
    }),
  };
}
