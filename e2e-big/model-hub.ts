/**
 * The real-size model for the browser: the random-weight checkpoint with Qwen3-0.6B's exact shape that
 * test/big/real-size.test.ts also uses (same folder, same seed: made once, by whichever runs first),
 * served by the weight-store tests' Hugging Face-like server (test/store/hub-server.ts: HEAD, Range,
 * ETag / X-Linked-ETag SHA-256, X-Repo-Commit, CORS), with a request log that says what was sent.
 *
 * The checkpoint has no tokenizer, and the worker only chats, so the served repo adds a Qwen3-sized one
 * (151,669 entries, Qwen3's special-token ids) built from the embedded model's byte-level BPE, and a
 * generation_config.json like Qwen3's. The text the random weights produce is noise; the token ids count.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
// @ts-expect-error: a plain .mjs script without type declarations
import { makeRandomCheckpoint, SHAPES } from '../scripts/make-random-checkpoint.mjs';
import { startHub, type Hit, type Hub } from '../test/store/hub-server';

export const BIG_ROOT = process.env.WEBDMS_BIG_DIR ?? '/tmp/webdms-big';
/** The folder test/big/real-size.test.ts writes: the same checkpoint serves both tests. */
export const CHECKPOINT_DIR = join(BIG_ROOT, 'qwen3-0.6b-random');
export const REPO = 'webdms-test/qwen3-0.6b-random';

const REPO_DIR = new URL('..', import.meta.url);

export interface Checkpoint {
  dir: string;
  /** Sum of the safetensors shards' sizes (headers included): what a cold start downloads at least. */
  safetensorsBytes: number;
  /** metadata.total_size of the index: the tensors' bytes. */
  tensorBytes: number;
  shards: string[];
  /** Seconds it took to write it, or null when it was already there. */
  madeSeconds: number | null;
}

/** Writes the checkpoint unless it is there (the index is written last, so its presence means complete). */
export function ensureCheckpoint(): Checkpoint {
  let madeSeconds: number | null = null;
  if (!existsSync(join(CHECKPOINT_DIR, 'model.safetensors.index.json'))) {
    mkdirSync(BIG_ROOT, { recursive: true });
    const t0 = performance.now();
    makeRandomCheckpoint(CHECKPOINT_DIR, SHAPES['qwen3-0.6b'], { seed: 1, shardBytes: 500e6 });
    madeSeconds = Math.round(performance.now() - t0) / 1000;
  }
  const index = JSON.parse(readFileSync(join(CHECKPOINT_DIR, 'model.safetensors.index.json'), 'utf8')) as { metadata: { total_size: number }; weight_map: Record<string, string> };
  const shards = [...new Set(Object.values(index.weight_map))].sort();
  const onDisk = readdirSync(CHECKPOINT_DIR).filter((f) => f.endsWith('.safetensors')).sort();
  if (JSON.stringify(onDisk) !== JSON.stringify(shards)) throw new Error(`${CHECKPOINT_DIR}: shards on disk ${onDisk.join(', ')} do not match the index (${shards.join(', ')}); delete the folder to rebuild it`);
  const safetensorsBytes = shards.reduce((n, f) => n + statSync(join(CHECKPOINT_DIR, f)).size, 0);
  return { dir: CHECKPOINT_DIR, safetensorsBytes, tensorBytes: index.metadata.total_size, shards, madeSeconds };
}

type Json = Record<string, unknown>;

/**
 * tokenizer.json / tokenizer_config.json for a 151,936-row model: the embedded model's byte-level BPE
 * (8,192 entries and its merges) padded to Qwen3's 151,643 regular entries, and the special tokens at
 * Qwen3's ids (151643 <|endoftext|>, 151644 <|im_start|>, 151645 <|im_end|>, ..., 151667 <think>,
 * 151668 </think>), so the config's eos_token_id 151645 is <|im_end|> as in the real model.
 */
export function qwen3SizedTokenizer(): { tokenizer: Json; tokenizerConfig: Json } {
  const dir = new URL('public/models/webdms-default/', REPO_DIR);
  const base = JSON.parse(readFileSync(new URL('tokenizer.json', dir), 'utf8')) as Json & { model: { vocab: Record<string, number> }; added_tokens: Json[] };
  const baseCfg = JSON.parse(readFileSync(new URL('tokenizer_config.json', dir), 'utf8')) as Json;
  const REGULAR = 151_643;
  const specials: [number, string, boolean][] = [
    [151643, '<|endoftext|>', true],
    [151644, '<|im_start|>', true],
    [151645, '<|im_end|>', true],
  ];
  for (let id = 151646; id < 151667; id++) specials.push([id, `<|reserved_special_${id - 151646}|>`, true]);
  specials.push([151667, '<think>', false], [151668, '</think>', false]);

  const byId: string[] = [];
  for (const [tok, id] of Object.entries(base.model.vocab)) byId[id] = tok;
  const moved = new Set(base.added_tokens.map((t) => t.content as string));
  const vocab: Record<string, number> = {};
  for (let id = 0; id < REGULAR; id++) {
    const tok = byId[id];
    // The embedded model's special tokens (ids 0-4) move to Qwen3's ids; their old rows become plain entries.
    // Padding entries are byte-level strings ('Ġ' is a space), so any id decodes to some text.
    vocab[tok !== undefined && !moved.has(tok) ? tok : `Ġ<pad${id}>`] = id;
  }
  for (const [id, tok] of specials) vocab[tok] = id;
  const addedTokens = specials.map(([id, content, special]) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special }));
  const tokenizer = { ...base, added_tokens: addedTokens, model: { ...(base.model as Json), vocab } };
  const tokenizerConfig: Json = {
    ...baseCfg,
    added_tokens_decoder: Object.fromEntries(specials.map(([id, content, special]) => [String(id), { content, lstrip: false, normalized: false, rstrip: false, single_word: false, special }])),
    additional_special_tokens: ['<|im_start|>', '<|im_end|>'],
    bos_token: null,
    eos_token: '<|im_end|>',
    pad_token: '<|endoftext|>',
    model_max_length: 40960,
  };
  return { tokenizer, tokenizerConfig };
}

export interface LoggedRequest {
  method: string;
  file: string;
  range?: string;
  status: number;
  /** Body bytes the server sent. */
  bytes: number;
}

export interface ModelHub {
  hub: Hub;
  /** The model's resolve/main/ base URL. */
  base: string;
  checkpoint: Checkpoint;
  /** Bytes of every file the repo serves. */
  sizes: Map<string, number>;
  /** Every request to the model so far. */
  log(): LoggedRequest[];
  /** Seconds spent reading the shards into memory and hashing them. */
  startSeconds: number;
  close(): Promise<void>;
}

function bodyBytes(h: Hit, size: number | undefined): number {
  if (h.method !== 'GET' || size === undefined) return 0;
  if (h.status === 200) return size;
  if (h.status !== 206) return 0;
  const m = /^bytes=(\d+)-(\d*)$/.exec(h.range ?? '');
  if (!m) return 0;
  const a = Number(m[1]);
  const b = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  return Math.max(0, b - a + 1);
}

/**
 * Serves the checkpoint (+ tokenizer) from test/store/hub-server.ts. The hub keeps files in memory, so the
 * shards (1.19 GB) are read into this process once. It hashes an LFS file on every request it answers
 * unless a SHA-256 is declared, so the real SHA-256 of each shard is computed once here and declared
 * (the headers carry the true hash; the store verifies the download against it).
 */
export async function startModelHub(checkpoint: Checkpoint): Promise<ModelHub> {
  const t0 = performance.now();
  const { tokenizer, tokenizerConfig } = qwen3SizedTokenizer();
  const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v, null, 1));
  const config = readFileSync(join(checkpoint.dir, 'config.json'));
  const files = new Map<string, Uint8Array>([
    ['config.json', config],
    ['generation_config.json', enc({ bos_token_id: 151643, eos_token_id: [151645, 151643], do_sample: false })],
    ['tokenizer.json', enc(tokenizer)],
    ['tokenizer_config.json', enc(tokenizerConfig)],
    ['model.safetensors.index.json', readFileSync(join(checkpoint.dir, 'model.safetensors.index.json'))],
  ]);
  const declared = new Map<string, string>();
  for (const shard of checkpoint.shards) {
    const body = readFileSync(join(checkpoint.dir, shard));
    files.set(shard, body);
    declared.set(shard, createHash('sha256').update(body).digest('hex'));
  }
  const commit = createHash('sha1').update(config).update(files.get('model.safetensors.index.json')!).digest('hex');
  const hub = await startHub({ [REPO]: { commit, files } });
  hub.faults.declaredSha = declared;
  const sizes = new Map([...files].map(([f, b]) => [f, b.length]));
  return {
    hub,
    base: hub.base(REPO),
    checkpoint,
    sizes,
    startSeconds: Math.round(performance.now() - t0) / 1000,
    log: () => hub.hits.filter((h) => h.repo === REPO).map((h) => ({ method: h.method, file: h.file, range: h.range, status: h.status, bytes: bodyBytes(h, sizes.get(h.file)) })),
    close: () => hub.close(),
  };
}

/** Totals of a slice of the request log. */
export function summarize(reqs: LoggedRequest[]): { requests: number; bytes: number; safetensorsRequests: number; safetensorsBytes: number; byFile: Record<string, { requests: number; bytes: number }> } {
  const byFile: Record<string, { requests: number; bytes: number }> = {};
  for (const r of reqs) {
    const key = `${r.method} ${r.file}`;
    const e = (byFile[key] ??= { requests: 0, bytes: 0 });
    e.requests++;
    e.bytes += r.bytes;
  }
  const st = reqs.filter((r) => r.file.endsWith('.safetensors'));
  return {
    requests: reqs.length,
    bytes: reqs.reduce((n, r) => n + r.bytes, 0),
    safetensorsRequests: st.length,
    safetensorsBytes: st.reduce((n, r) => n + r.bytes, 0),
    byFile,
  };
}
