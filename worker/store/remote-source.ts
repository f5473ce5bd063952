/**
 * RemoteSource: a ModelSource read straight from the network, for a checkpoint that streams onto the
 * GPU without being stored (the weight store keeps its quantized copy instead, see quantized-copy.ts).
 * Unlike the plain HttpSource it survives a flaky connection: each range read is retried with backoff
 * when the error says a retry can help (network loss, stall, 5xx, 429), and it counts what it fetched.
 */
import { ModelLoadError, checkRange, type ModelSource } from '../load/source';
import { FetchError, Remote, type RemoteFileInfo, type RemoteOptions } from './remote';

export interface RemoteSourceOptions extends RemoteOptions {
  /** Attempts per read after the first (default 4), with backoff from retryDelayMs (default 500, capped at 8 s). */
  retries?: number;
  retryDelayMs?: number;
  /** Aborting makes every later read reject with the signal's reason (a cancelled load). */
  signal?: AbortSignal;
  /** Told before each retry: what failed, the attempt that comes next (2 = the first retry), of how many, and after what delay. */
  onRetry?: (error: Error, attempt: number, attempts: number, delayMs: number) => void;
  /** Bytes of `file` received so far by reads, of its size. */
  onProgress?: (file: string, loadedBytes: number, totalBytes: number) => void;
}

/** Largest file kept whole in memory when the server ignores Range (bigger ones are read window by window). */
const WHOLE_FILE_LIMIT = 256 * 1024 * 1024;

export class RemoteSource implements ModelSource {
  readonly name: string;
  readonly remote: Remote;
  /** Bytes received over the network (retried bytes counted once). */
  bytesFetched = 0;
  private readonly infos = new Map<string, Promise<RemoteFileInfo | null>>();
  private readonly texts = new Map<string, Promise<string>>();
  /** Whole files from a server that ignores Range. */
  private readonly wholes = new Map<string, Promise<Uint8Array>>();
  /** Bytes read per file, for onProgress. */
  private readonly loaded = new Map<string, number>();

  constructor(baseUrl: string, private readonly opts: RemoteSourceOptions = {}) {
    this.remote = new Remote(baseUrl, opts);
    this.name = this.remote.base;
  }

  private info(file: string): Promise<RemoteFileInfo | null> {
    let p = this.infos.get(file);
    if (!p) {
      p = this.retry(() => this.remote.probe(file));
      this.infos.set(file, p);
      p.catch(() => this.infos.delete(file));
    }
    return p;
  }

  async exists(file: string): Promise<boolean> {
    return (await this.info(file)) !== null;
  }

  async size(file: string): Promise<number> {
    const i = await this.info(file);
    if (!i) {
      const url = this.remote.url(file);
      if (this.remote.htmlAnswers.has(file)) throw new ModelLoadError(`${file} at ${url}: expected the file, the server answered with a web page (HTML); is the model address right?`, url, 200);
      throw new ModelLoadError(`${file} was not found (HTTP 404) at ${url}`, url, 404);
    }
    return i.size;
  }

  /** Small files (config, tokenizer) are kept: the quantized copy copies them after the load read them. */
  text(file: string): Promise<string> {
    let p = this.texts.get(file);
    if (!p) {
      p = this.size(file).then(async (n) => new TextDecoder().decode(await this.read(file, 0, n)));
      this.texts.set(file, p);
      p.catch(() => this.texts.delete(file));
    }
    return p;
  }

  async read(file: string, offset: number, length: number): Promise<Uint8Array> {
    checkRange(offset, length);
    const size = await this.size(file);
    if (offset + length > size) throw new ModelLoadError(`Read past the end of ${file} (${size} bytes): ${length} bytes at ${offset}`, this.remote.url(file));
    if (this.remote.rangesIgnored && size <= WHOLE_FILE_LIMIT) {
      const whole = await this.wholeFile(file, size);
      return whole.slice(offset, offset + length);
    }
    return this.retry(async () => {
      const b = await this.remote.fetchRange(file, offset, length, size);
      this.bytesFetched += b.byteLength;
      const loaded = (this.loaded.get(file) ?? 0) + b.byteLength;
      this.loaded.set(file, loaded);
      this.opts.onProgress?.(file, loaded, size);
      return b;
    });
  }

  /** All of `file`, downloaded once, for a server that ignores Range (each read would otherwise stream the file from its start). */
  private wholeFile(file: string, size: number): Promise<Uint8Array> {
    let p = this.wholes.get(file);
    if (!p) {
      p = this.retry(async () => {
        let out: Uint8Array = new Uint8Array(0);
        await (await this.remote.fetchWhole(file, size)).chunks(Math.max(1, size), async (_, bytes) => void (out = bytes));
        this.bytesFetched += out.byteLength;
        this.opts.onProgress?.(file, size, size);
        return out;
      });
      this.wholes.set(file, p);
      p.catch(() => this.wholes.delete(file));
    }
    return p;
  }

  private async retry<T>(fn: () => Promise<T>): Promise<T> {
    const retries = this.opts.retries ?? 4;
    const base = this.opts.retryDelayMs ?? 500;
    for (let attempt = 0; ; attempt++) {
      this.opts.signal?.throwIfAborted();
      try {
        return await fn();
      } catch (e) {
        this.opts.signal?.throwIfAborted();
        if (!(e instanceof FetchError) || !e.retriable) throw e;
        if (attempt >= retries) throw new FetchError(`${e.message} (gave up after ${attempt + 1} attempts)`, e.url ?? this.name, e.status, false, e.network);
        const delay = Math.min(base * 2 ** attempt, 8000);
        this.opts.onRetry?.(e, attempt + 2, retries + 1, delay);
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }
}
