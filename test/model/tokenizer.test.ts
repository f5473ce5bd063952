import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelLoadError } from '../../worker/load/source';
import { FolderSource } from '../../worker/load/source-node';
import { HttpSource } from '../../worker/load/source';
import { ModelTokenizer, TokenizerError } from '../../worker/model/tokenizer';
import { serveFiles } from '../load/helpers';

/** GPT-2's reversible byte → printable character map used by ByteLevel. */
function byteChars(): string[] {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const out: string[] = [];
  let extra = 0;
  for (let b = 0; b < 256; b++) out.push(String.fromCharCode(printable(b) ? b : 256 + extra++));
  return out;
}
const BC = byteChars();
const bl = (s: string) => [...new TextEncoder().encode(s)].map((b) => BC[b]).join('');

/** A tiny Qwen-like ByteLevel BPE: all 256 bytes, a few merges, ChatML specials and <think>. */
function byteLevelTokenizer() {
  const merges: [string, string][] = [
    ['h', 'e'], ['l', 'l'], ['he', 'll'], ['hell', 'o'],
    [bl(' '), 'w'], [bl(' ') + 'w', 'o'], ['r', 'l'], ['rl', 'd'], [bl(' ') + 'wo', 'rld'],
    [BC[0xc3], BC[0xa9]], // é as one token
    ['h', bl('é')], ['ll', 'o'], [`h${bl('é')}`, 'llo'],
    [BC[0xf0], BC[0x9f]], // first half of 4-byte emoji
    [BC[0x98], BC[0x80]], // second half of 😀
  ];
  const vocab: Record<string, number> = {};
  BC.forEach((c, i) => (vocab[c] = i));
  for (const [a, b] of merges) vocab[a + b] ??= Object.keys(vocab).length;
  const n = Object.keys(vocab).length;
  const added = ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<think>', '</think>'].map((content, i) => ({
    id: n + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: !content.includes('think'),
  }));
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: { type: 'NFC' },
    pre_tokenizer: byteLevel,
    post_processor: { ...byteLevel, use_regex: false },
    decoder: { ...byteLevel, use_regex: false },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '',
      fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges,
    },
  };
}

/** A tiny Llama-2-like SentencePiece BPE with byte fallback, a Metaspace-style normaliser and <s> BOS. */
function byteFallbackTokenizer() {
  const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = 3 + b;
  const pieces = ['▁', 'h', 'e', 'l', 'o', 'w', 'r', 'd', 'é', 'he', 'll', 'hell', 'hello', '▁h', '▁hello', '▁w', 'or', '▁wor', 'ld', '▁world'];
  for (const p of pieces) vocab[p] = Object.keys(vocab).length;
  const merges = ['h e', 'l l', 'he ll', 'hell o', '▁ h', '▁h ello', '▁ hello', '▁ w', 'o r', '▁w or', 'l d', '▁wor ld'];
  return {
    version: '1.0',
    added_tokens: [
      { id: 0, content: '<unk>', special: true, normalized: false, lstrip: false, rstrip: false, single_word: false },
      { id: 1, content: '<s>', special: true, normalized: false, lstrip: false, rstrip: false, single_word: false },
      { id: 2, content: '</s>', special: true, normalized: false, lstrip: false, rstrip: false, single_word: false },
    ],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges,
    },
  };
}

const CHATML =
  "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endfor %}" +
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}" +
  "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}{%- endif %}";

const qwenConfig = () => ({
  bos_token: null,
  eos_token: '<|im_end|>',
  pad_token: { content: '<|endoftext|>', lstrip: false, normalized: false, rstrip: false, single_word: false },
  unk_token: null,
  clean_up_tokenization_spaces: false,
  chat_template: CHATML,
});

const SAMPLES = ['hello world', 'héllo 😀', 'hello😀😀 wörld é!', '日本語のテキスト 🎉 ok', '  spaces\tand\nnewlines  ', 'a'];

function streamAll(tok: ModelTokenizer, ids: number[], skipSpecial = true): string[] {
  const dec = tok.createStreamDecoder(skipSpecial);
  const parts = ids.map((id) => dec.push(id));
  parts.push(dec.flush());
  return parts;
}

describe('ModelTokenizer with a ByteLevel BPE (Qwen-like)', () => {
  const tok = ModelTokenizer.fromJson(byteLevelTokenizer(), qwenConfig());

  it('applies merges, including inside multi-byte characters', () => {
    const ids = tok.encode('héllo 😀', false);
    const toks = ids.map((i) => tok.tokenizer.id_to_token(i));
    expect(toks).toEqual([`h${bl('é')}llo`, bl(' '), BC[0xf0] + BC[0x9f], BC[0x98] + BC[0x80]]);
    expect(tok.encode('hello world')).toEqual([tok.tokenToId('hello'), tok.tokenToId(bl(' ') + 'world')]);
  });

  it('round-trips text, including non-ASCII', () => {
    for (const s of SAMPLES) expect(tok.decode(tok.encode(s)), s).toBe(s);
    expect(tok.decode([])).toBe('');
  });

  it('encodes special tokens atomically and skips them in decode unless asked', () => {
    const ids = tok.encode('<|im_start|>user\nhello<|im_end|><think>é</think>');
    expect(ids[0]).toBe(tok.tokenToId('<|im_start|>'));
    expect(ids).toContain(tok.tokenToId('<|im_end|>'));
    expect(tok.decode(ids, false)).toBe('<|im_start|>user\nhello<|im_end|><think>é</think>');
    // <think> is an added token but not special (as in Qwen3): it stays.
    expect(tok.decode(ids)).toBe('user\nhello<think>é</think>');
  });

  it('exposes special tokens and eos ids from tokenizer_config.json', () => {
    expect(tok.specialTokens).toEqual({ bos: null, eos: '<|im_end|>', pad: '<|endoftext|>', unk: null });
    expect(tok.eosTokenIds).toEqual([tok.tokenToId('<|im_end|>')]);
    expect(tok.bosTokenId).toBeNull();
  });

  it('streams text that never contains a cut character and adds up to the full decode', () => {
    for (const s of [...SAMPLES, '<|im_start|>assistant\n<think>😀</think>héllo<|im_end|>']) {
      const ids = tok.encode(s, false);
      for (const skip of [true, false]) {
        const parts = streamAll(tok, ids, skip);
        for (const p of parts) expect(p, s).not.toContain('\uFFFD');
        expect(parts.join(''), s).toBe(tok.decode(ids, skip));
      }
    }
  });

  it('holds back the first half of a character until the rest arrives', () => {
    const ids = tok.encode('a😀b', false);
    expect(ids.length).toBe(4); // a, F0 9F, 98 80, b
    const dec = tok.createStreamDecoder();
    expect(dec.push(ids[0])).toBe('a');
    expect(dec.push(ids[1])).toBe('');
    expect(dec.push(ids[2])).toBe('😀');
    expect(dec.push(ids[3])).toBe('b');
    expect(dec.flush()).toBe('');
  });

  it('streams token by token when every byte is its own token', () => {
    // Emoji and CJK as single bytes: each character spans 3-4 tokens.
    const s = '🎉日本é😀x';
    const ids = [...new TextEncoder().encode(s)].map((b) => tok.tokenToId(BC[b])!);
    const parts = streamAll(tok, ids);
    expect(parts.join('')).toBe(s);
    expect(parts.filter((p) => p !== '')).toEqual(['🎉', '日', '本', 'é', '😀', 'x']);
  });

  it('flushes an incomplete tail and resets', () => {
    const dec = tok.createStreamDecoder();
    expect(dec.push(tok.tokenToId('h')!)).toBe('h');
    expect(dec.push(tok.tokenToId(BC[0xf0] + BC[0x9f])!)).toBe('');
    expect(dec.flush()).toBe('\uFFFD');
    expect(dec.push(tok.tokenToId('hello')!)).toBe('hello');
  });

  it('renders the ChatML template with generation prompt and thinking switch', () => {
    const msgs = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'héllo 😀' }];
    expect(tok.applyChatTemplate(msgs)).toBe('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhéllo 😀<|im_end|>\n');
    expect(tok.applyChatTemplate(msgs, { addGenerationPrompt: true })).toBe(
      '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhéllo 😀<|im_end|>\n<|im_start|>assistant\n');
    expect(tok.applyChatTemplate(msgs, { addGenerationPrompt: true, enableThinking: true }).endsWith('<|im_start|>assistant\n')).toBe(true);
    expect(tok.applyChatTemplate(msgs, { addGenerationPrompt: true, enableThinking: false }).endsWith(
      '<|im_start|>assistant\n<think>\n\n</think>\n\n')).toBe(true);
    const ids = tok.encode(tok.applyChatTemplate(msgs, { addGenerationPrompt: true }), false);
    expect(ids.filter((i) => i === tok.tokenToId('<|im_start|>')).length).toBe(3);
  });

  it('raises clear errors for a missing or broken template', () => {
    const none = ModelTokenizer.fromJson(byteLevelTokenizer(), { ...qwenConfig(), chat_template: undefined });
    expect(() => none.applyChatTemplate([{ role: 'user', content: 'x' }])).toThrow(/no chat template/);
    const broken = ModelTokenizer.fromJson(byteLevelTokenizer(), { ...qwenConfig(), chat_template: '{% for m in messages %}' });
    expect(() => broken.applyChatTemplate([{ role: 'user', content: 'x' }])).toThrow(TokenizerError);
    const raising = ModelTokenizer.fromJson(byteLevelTokenizer(), { ...qwenConfig(), chat_template: "{{ raise_exception('roles must alternate') }}" });
    expect(() => raising.applyChatTemplate([{ role: 'user', content: 'x' }])).toThrow(/roles must alternate/);
  });
});

describe('ModelTokenizer with byte fallback and a Metaspace-style decoder (Llama-2-like)', () => {
  const cfg = { bos_token: '<s>', eos_token: { content: '</s>' }, unk_token: '<unk>', chat_template: '{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}{{ eos_token }}{% endfor %}' };
  const tok = ModelTokenizer.fromJson(byteFallbackTokenizer(), cfg);

  it('adds BOS only with addSpecial, uses byte fallback and round-trips', () => {
    const ids = tok.encode('hello world');
    expect(ids).toEqual([1, tok.tokenToId('▁hello'), tok.tokenToId('▁world')]);
    expect(tok.encode('hello world', false)).toEqual(ids.slice(1));
    const emoji = tok.encode('hi 😀', false);
    expect(emoji.slice(-4)).toEqual([0xf0, 0x9f, 0x98, 0x80].map((b) => 3 + b));
    for (const s of ['hello world', 'héllo 😀 world', '日本 hello']) expect(tok.decode(tok.encode(s)), s).toBe(s);
    expect(tok.bosTokenId).toBe(1);
    expect(tok.eosTokenIds).toEqual([2]);
  });

  it('streams with the leading spaces right and no cut characters', () => {
    for (const s of ['hello world', 'héllo 😀 world hello', ' 日本 hello😀😀', 'world']) {
      const ids = tok.encode(s);
      const parts = streamAll(tok, ids);
      for (const p of parts) expect(p, s).not.toContain('\uFFFD');
      expect(parts.join(''), s).toBe(tok.decode(ids));
    }
    const ids = tok.encode('hello world hello', false);
    expect(streamAll(tok, ids).filter((p) => p)).toEqual(['hello', ' world', ' hello']);
  });

  it('renders templates with bos_token and eos_token', () => {
    expect(tok.applyChatTemplate([{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'yo' }])).toBe('<s>[user] hi</s>[assistant] yo</s>');
  });
});

describe('ModelTokenizer.load', () => {
  const enc = (v: unknown) => new TextEncoder().encode(typeof v === 'string' ? v : JSON.stringify(v));
  const variants: Record<string, Map<string, Uint8Array>> = {
    'a string template': new Map([['tokenizer.json', enc(byteLevelTokenizer())], ['tokenizer_config.json', enc(qwenConfig())]]),
    'a list of named templates': new Map([
      ['tokenizer.json', enc(byteLevelTokenizer())],
      ['tokenizer_config.json', enc({ ...qwenConfig(), chat_template: [{ name: 'tool_use', template: 'TOOLS' }, { name: 'default', template: CHATML }] })],
    ]),
    'chat_template.jinja': new Map([
      ['tokenizer.json', enc(byteLevelTokenizer())],
      ['tokenizer_config.json', enc({ ...qwenConfig(), chat_template: undefined })],
      ['chat_template.jinja', enc(CHATML)],
    ]),
  };

  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'webdms-tok-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  for (const [what, files] of Object.entries(variants)) {
    it(`reads ${what} from a folder and over HTTP`, async () => {
      const sub = join(dir, what.replace(/\W+/g, '_'));
      await import('node:fs/promises').then((fs) => fs.mkdir(sub));
      for (const [n, b] of files) await writeFile(join(sub, n), b);
      const srv = await serveFiles(files);
      try {
        for (const src of [new FolderSource(sub), new HttpSource(srv.url)]) {
          const tok = await ModelTokenizer.load(src);
          expect(tok.chatTemplate).toBe(CHATML);
          expect(tok.applyChatTemplate([{ role: 'user', content: 'hi' }], { addGenerationPrompt: true })).toBe(
            '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n');
          expect(tok.decode(tok.encode('héllo 😀'))).toBe('héllo 😀');
          expect(tok.eosTokenIds).toEqual([tok.tokenToId('<|im_end|>')]);
        }
      } finally {
        await srv.close();
      }
    });
  }

  it('works without tokenizer_config.json, and names what is missing or broken', async () => {
    const srv = await serveFiles(new Map([['tokenizer.json', enc(byteLevelTokenizer())]]));
    const bad = await serveFiles(new Map([['tokenizer.json', enc('{not json')]]));
    const noDefault = await serveFiles(new Map([
      ['tokenizer.json', enc(byteLevelTokenizer())],
      ['tokenizer_config.json', enc({ chat_template: [{ name: 'rag', template: 'x' }] })],
    ]));
    const empty = await serveFiles(new Map());
    try {
      const tok = await ModelTokenizer.load(new HttpSource(srv.url));
      expect(tok.chatTemplate).toBeNull();
      expect(tok.eosTokenIds).toEqual([]);
      expect(tok.decode(tok.encode('hello'))).toBe('hello');
      await expect(ModelTokenizer.load(new HttpSource(bad.url))).rejects.toThrow(/tokenizer\.json \(http:\/\/127\.0\.0\.1:\d+\/\)/);
      await expect(ModelTokenizer.load(new HttpSource(noDefault.url))).rejects.toThrow(/no 'default' entry \(has: rag\)/);
      await expect(ModelTokenizer.load(new HttpSource(empty.url))).rejects.toThrow(ModelLoadError);
      await expect(ModelTokenizer.load(new HttpSource(empty.url))).rejects.toThrow(/tokenizer\.json not found/);
    } finally {
      await Promise.all([srv.close(), bad.close(), noDefault.close(), empty.close()]);
    }
  });
});
