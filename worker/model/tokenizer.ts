/**
 * The model's tokenizer (tokenizer.json through @huggingface/tokenizers), its chat template
 * (through @huggingface/jinja) and a streaming detokenizer that only emits complete UTF-8 text.
 */
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { ModelLoadError, type ModelSource } from '../load/source';

export interface ChatMessage {
  role: string;
  content: string;
}

export interface ChatTemplateOptions {
  addGenerationPrompt?: boolean;
  /** Passed as `enable_thinking` (Qwen3 templates); left undefined when not given. */
  enableThinking?: boolean;
}

export interface SpecialTokens {
  bos: string | null;
  eos: string | null;
  pad: string | null;
  unk: string | null;
}

export interface StreamDecoder {
  /** Adds a token; returns the text that became final (possibly ''). */
  push(id: number): string;
  /** Returns whatever is left (including an incomplete UTF-8 tail, as U+FFFD) and resets. */
  flush(): string;
}

export class TokenizerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TokenizerError';
  }
}

type Json = Record<string, unknown>;

/** A special token in tokenizer_config.json: a string or a serialised AddedToken `{ content, ... }`. */
function tokenString(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return null;
}

/** chat_template: a string, or a list of `{ name, template }` of which 'default' is taken. */
function pickTemplate(v: unknown, where: string): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    const def = v.find((t) => t && typeof t === 'object' && (t as { name?: unknown }).name === 'default');
    if (!def) {
      const names = v.map((t) => (t as { name?: unknown })?.name).join(', ');
      throw new TokenizerError(`${where}: chat_template list has no 'default' entry (has: ${names})`);
    }
    const tpl = (def as { template?: unknown }).template;
    if (typeof tpl !== 'string') throw new TokenizerError(`${where}: chat_template 'default' has no template string`);
    return tpl;
  }
  throw new TokenizerError(`${where}: chat_template must be a string or a list of {name, template}`);
}

async function readJson(src: ModelSource, file: string): Promise<Json> {
  const text = await src.text(file);
  try {
    const v = JSON.parse(text);
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not a JSON object');
    return v as Json;
  } catch (e) {
    throw new TokenizerError(`${file} (${src.name}): ${(e as Error).message}`);
  }
}

export class ModelTokenizer {
  readonly specialTokens: SpecialTokens;
  readonly bosTokenId: number | null;
  /** The eos token of tokenizer_config.json, as ids (empty when none). */
  readonly eosTokenIds: number[];
  readonly chatTemplate: string | null;
  private compiled: Template | null = null;
  /** Ids of added tokens marked special: removed by decode(ids, true). */
  private readonly specialIds: Set<number>;

  constructor(
    readonly tokenizer: Tokenizer,
    readonly config: Json,
    chatTemplate: string | null,
  ) {
    this.chatTemplate = chatTemplate;
    this.specialTokens = {
      bos: tokenString(config.bos_token),
      eos: tokenString(config.eos_token),
      pad: tokenString(config.pad_token),
      unk: tokenString(config.unk_token),
    };
    const id = (t: string | null) => (t === null ? undefined : tokenizer.token_to_id(t));
    this.bosTokenId = id(this.specialTokens.bos) ?? null;
    const eos = id(this.specialTokens.eos);
    this.eosTokenIds = eos === undefined ? [] : [eos];
    this.specialIds = new Set([...tokenizer.get_added_tokens_decoder()].filter(([, t]) => t.special).map(([i]) => i));
  }

  /** Builds from the parsed JSON files (for tests and callers that already hold them). */
  static fromJson(tokenizerJson: unknown, tokenizerConfig: unknown = {}, chatTemplate?: string | null): ModelTokenizer {
    if (typeof tokenizerJson !== 'object' || tokenizerJson === null) throw new TokenizerError('tokenizer.json: not a JSON object');
    const cfg = { ...((tokenizerConfig ?? {}) as Json) };
    // transformers no longer cleans up spaces by default; the library does unless told.
    cfg.clean_up_tokenization_spaces ??= false;
    const tj = tokenizerJson as Json;
    let tok: Tokenizer;
    try {
      tok = new Tokenizer({ added_tokens: [], ...tj }, cfg);
    } catch (e) {
      throw new TokenizerError(`tokenizer.json: cannot build the tokenizer: ${(e as Error).message}`);
    }
    const tpl = chatTemplate !== undefined ? chatTemplate : pickTemplate(cfg.chat_template, 'tokenizer_config.json');
    return new ModelTokenizer(tok, cfg, tpl);
  }

  /**
   * Reads tokenizer.json and tokenizer_config.json (optional), and the chat template from
   * tokenizer_config.json or else from chat_template.jinja / chat_template.json.
   */
  static async load(src: ModelSource): Promise<ModelTokenizer> {
    if (!(await src.exists('tokenizer.json'))) {
      throw new ModelLoadError(`${src.name}: tokenizer.json not found (only fast tokenizers in tokenizer.json are supported)`);
    }
    const [tj, cfg] = await Promise.all([
      readJson(src, 'tokenizer.json'),
      src.exists('tokenizer_config.json').then((e) => (e ? readJson(src, 'tokenizer_config.json') : ({} as Json))),
    ]);
    let tpl = pickTemplate(cfg.chat_template, 'tokenizer_config.json');
    if (tpl === null && (await src.exists('chat_template.jinja'))) tpl = await src.text('chat_template.jinja');
    if (tpl === null && (await src.exists('chat_template.json'))) {
      tpl = pickTemplate((await readJson(src, 'chat_template.json')).chat_template, 'chat_template.json');
    }
    return ModelTokenizer.fromJson(tj, cfg, tpl);
  }

  private vocabSizeCache = -1;
  /** Vocabulary entries, added tokens included. */
  get vocabSize(): number {
    if (this.vocabSizeCache < 0) this.vocabSizeCache = this.tokenizer.get_vocab(true).size;
    return this.vocabSizeCache;
  }

  tokenToId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }

  /** Text → ids. `addSpecial` (default true, as in transformers) runs the post-processor (e.g. a BOS). */
  encode(text: string, addSpecial = true): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: addSpecial }).ids;
  }

  decode(ids: number[], skipSpecial = true): string {
    const kept = skipSpecial ? ids.filter((i) => !this.specialIds.has(i)) : ids;
    if (kept.length === 0) return '';
    return this.tokenizer.decode(kept, { skip_special_tokens: skipSpecial });
  }

  applyChatTemplate(messages: ChatMessage[], opts: ChatTemplateOptions = {}): string {
    if (this.chatTemplate === null) {
      throw new TokenizerError(
        'This model has no chat template (none in tokenizer_config.json, chat_template.jinja or chat_template.json); use plain completion');
    }
    if (!this.compiled) {
      try {
        this.compiled = new Template(this.chatTemplate);
      } catch (e) {
        throw new TokenizerError(`Chat template does not parse: ${(e as Error).message}`);
      }
    }
    const ctx: Record<string, unknown> = {
      messages,
      add_generation_prompt: opts.addGenerationPrompt ?? false,
      bos_token: this.specialTokens.bos ?? '',
      eos_token: this.specialTokens.eos ?? '',
      pad_token: this.specialTokens.pad ?? '',
      unk_token: this.specialTokens.unk ?? '',
    };
    if (opts.enableThinking !== undefined) ctx.enable_thinking = opts.enableThinking;
    try {
      return this.compiled.render(ctx);
    } catch (e) {
      throw new TokenizerError(`Chat template failed: ${(e as Error).message}`);
    }
  }

  /**
   * Incremental detokenizer. It decodes a window of the ids (from one token before the last emitted
   * boundary, so that decoders which drop a leading space see their context) and emits the new text
   * once it no longer ends in U+FFFD, i.e. once no multi-byte character is cut in half.
   */
  createStreamDecoder(skipSpecial = true): StreamDecoder {
    let ids: number[] = [];
    let start = 0; // window start in ids
    let emitted = ''; // text of the window already emitted
    const step = (final: boolean): string => {
      const text = this.decode(ids.slice(start), skipSpecial);
      let stable = text;
      if (!final) {
        let end = text.length;
        while (end > 0 && text.charCodeAt(end - 1) === 0xfffd) end--;
        stable = text.slice(0, end);
      }
      if (stable.length <= emitted.length) return '';
      // With a prefix-stable decoder `stable` starts with `emitted`; otherwise the best we can do is
      // to continue after the same number of characters.
      const out = stable.slice(emitted.length);
      if (stable.length === text.length && ids.length > 0) {
        // Everything is final: restart the window at the last token.
        start = ids.length - 1;
        emitted = this.decode(ids.slice(start), skipSpecial);
        if (start > 4096) {
          ids = ids.slice(start);
          start = 0;
        }
      } else {
        emitted = stable;
      }
      return out;
    };
    return {
      push: (id: number) => {
        ids.push(id);
        return step(false);
      },
      flush: () => {
        const out = step(true);
        ids = [];
        start = 0;
        emitted = '';
        return out;
      },
    };
  }
}
