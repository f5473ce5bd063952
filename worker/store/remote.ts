/**
 * The network side of the weight store: metadata of a remote file (size, SHA-256, ETag, commit) and
 * byte-range downloads that stream (for progress) and give up on a stalled connection.
 *
 * URLs and the plain ranged reader come from ../load/source (HttpSource, resolveModelUrl); this
 * module adds what storing needs and HttpSource does not expose: response headers, streaming progress,
 * stall timeouts, and errors that say whether a retry can help.
 */
import { HttpSource, ModelLoadError, parseContentRange } from '../load/source';
import { explainNetworkFailure } from '../load/net-error';

const isOffline = (): boolean => (globalThis as { navigator?: { onLine?: boolean } }).navigator?.onLine === false;

export interface RemoteOptions {
  fetch?: typeof fetch;
  headers?: Record<string, string>;
  /** A request whose response or body makes no progress for this long is aborted (default 30 s). */
  stallTimeoutMs?: number;
}

export interface RemoteFileInfo {
  file: string;
  url: string;
  size: number;
  /** The file's SHA-256 when the server tells it (Hugging Face LFS: X-Linked-ETag / ETag). */
  sha256?: string;
  etag?: string;
  lastModified?: string;
  /** Hugging Face's X-Repo-Commit. */
  commit?: string;
}

/** A download error; `retriable` when trying again may work (network loss, stall, 5xx, 429). */
export class FetchError extends ModelLoadError {
  constructor(
    message: string,
    url: string,
    status: number | undefined,
    readonly retriable: boolean,
    /** True when the request never got an HTTP response (offline, DNS, CORS, connection refused). */
    readonly network = false,
  ) {
    super(message, url, status);
    this.name = 'ModelLoadError';
  }
}


/** A quoted (possibly weak) ETag that is a 64-hex SHA-256, as Hugging Face sends for LFS files. */
export function sha256FromEtag(h: string | null | undefined): string | undefined {
  if (!h) return undefined;
  const m = /^(?:W\/)?"?([0-9a-fA-F]{64})"?$/.exec(h.trim());
  return m ? m[1].toLowerCase() : undefined;
}

function httpMessage(status: number, statusText: string, url: string, what: string): string {
  const reason =
    status === 404 ? 'not found: there is no such file at this address' :
    status === 401 || status === 403 ? 'access denied: the repository is private or gated (or does not exist)' :
    status === 416 ? 'range not satisfiable' :
    status === 429 ? 'too many requests: the server is rate-limiting, try again later' :
    status >= 500 ? `server error${statusText ? ` (${statusText})` : ''}` : statusText || 'error';
  return `HTTP ${status} ${reason} for ${url} (${what})`;
}

const isHtml = (res: Response): boolean => /^\s*text\/html/i.test(res.headers.get('content-type') ?? '');

export class Remote {
  readonly base: string;
  readonly http: HttpSource;
  private readonly fetchFn: typeof fetch;
  private readonly headers: Record<string, string>;
  readonly stallTimeoutMs: number;
  /** Set once the server answered a Range request with the whole file. */
  rangesIgnored = false;

  constructor(baseUrl: string, opts: RemoteOptions = {}) {
    this.fetchFn = opts.fetch ?? ((...a: Parameters<typeof fetch>) => globalThis.fetch(...a));
    this.headers = opts.headers ?? {};
    this.http = new HttpSource(baseUrl, { fetch: this.fetchFn, headers: this.headers });
    this.base = this.http.name;
    this.stallTimeoutMs = opts.stallTimeoutMs ?? 30_000;
  }

  url(file: string): string {
    return this.http.url(file);
  }

  /** fetch with no HTTP-cache copy (the store is the cache) and a timeout until the response starts. */
  private async request(file: string, init: RequestInit, what: string, ctl = new AbortController()): Promise<Response> {
    const url = this.url(file);
    const timer = setTimeout(() => ctl.abort(new Error(`no response after ${this.stallTimeoutMs} ms`)), this.stallTimeoutMs);
    try {
      return await this.fetchFn(url, {
        ...init,
        cache: 'no-store',
        signal: ctl.signal,
        headers: { ...this.headers, ...(init.headers as Record<string, string> | undefined) },
      });
    } catch (e) {
      const reason = ctl.signal.aborted ? (ctl.signal.reason as Error)?.message ?? 'timed out' : (e as Error)?.message ?? String(e);
      const f = await explainNetworkFailure(url, what, reason, { timedOut: ctl.signal.aborted, probe: this.fetchFn });
      throw new FetchError(f.message, url, undefined, f.retriable, true);
    } finally {
      clearTimeout(timer);
    }
  }

  private fail(res: Response, url: string, what: string): never {
    const retriable = res.status === 429 || res.status >= 500 || res.status === 408;
    throw new FetchError(httpMessage(res.status, res.statusText, url, what), url, res.status, retriable);
  }

  private info(file: string, res: Response, size: number): RemoteFileInfo {
    const h = res.headers;
    const etag = h.get('x-linked-etag') ?? h.get('etag') ?? undefined;
    return {
      file,
      url: this.url(file),
      size,
      sha256: sha256FromEtag(h.get('x-linked-etag')) ?? sha256FromEtag(h.get('etag')),
      etag: etag ?? undefined,
      lastModified: h.get('last-modified') ?? undefined,
      commit: h.get('x-repo-commit') ?? undefined,
    };
  }

  /**
   * For a Hugging Face resolve URL at a repo's root, the Hub's tree listing: file → size and, for LFS
   * files, the SHA-256 (`lfs.oid`). In a browser the LFS download redirects to a CDN and the
   * X-Linked-ETag of the redirect cannot be read, so this is where the SHA-256 comes from there.
   * null when the URL is not of that form or the listing cannot be had (then headers are used).
   */
  async hubTree(): Promise<Map<string, { size: number; sha256?: string }> | null> {
    const u = new URL(this.base);
    const m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/$/.exec(u.pathname);
    if (!m) return null;
    const api = `${u.origin}/api/models/${m[1]}/tree/${m[2]}`;
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), this.stallTimeoutMs);
    try {
      const res = await this.fetchFn(api, { cache: 'no-store', signal: ctl.signal, headers: this.headers });
      if (!res.ok) {
        await res.body?.cancel().catch(() => undefined);
        return null;
      }
      const list = (await res.json()) as unknown;
      if (!Array.isArray(list)) return null;
      const out = new Map<string, { size: number; sha256?: string }>();
      for (const e of list as { type?: string; path?: string; size?: number; lfs?: { oid?: string; size?: number } }[]) {
        if (e?.type !== 'file' || typeof e.path !== 'string' || typeof e.size !== 'number') continue;
        const sha = typeof e.lfs?.oid === 'string' && /^[0-9a-f]{64}$/i.test(e.lfs.oid) ? e.lfs.oid.toLowerCase() : undefined;
        out.set(e.path, { size: e.lfs?.size ?? e.size, sha256: sha });
      }
      return out;
    } catch {
      return null;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Files the server answered with a web page (taken as absent): errors can say so instead of "404". */
  readonly htmlAnswers = new Set<string>();

  private htmlInstead(file: string): null {
    this.htmlAnswers.add(file);
    return null;
  }

  /** Size and identity of a file, or null when the server says 404 (or sends a web page instead). */
  async probe(file: string): Promise<RemoteFileInfo | null> {
    const url = this.url(file);
    const head = await this.request(file, { method: 'HEAD' }, 'size');
    if (head.status === 404) return null;
    // A single-page app's fallback (e.g. Vite's dev server) answers any path with its index.html: not the file.
    if (head.ok && isHtml(head) && !/\.html?$/i.test(file)) return this.htmlInstead(file);
    if (head.ok) {
      const linked = head.headers.get('x-linked-size');
      const len = head.headers.get('content-length');
      const enc = head.headers.get('content-encoding');
      if (linked && /^\d+$/.test(linked)) return this.info(file, head, Number(linked));
      if (len !== null && /^\d+$/.test(len) && (!enc || enc === 'identity')) return this.info(file, head, Number(len));
    } else if (head.status !== 405 && head.status !== 501) {
      this.fail(head, url, 'size');
    }
    // No usable HEAD: one byte, and the total in Content-Range.
    const res = await this.request(file, { headers: { Range: 'bytes=0-0' } }, 'size');
    if (res.status === 404) {
      await res.body?.cancel().catch(() => undefined);
      return null;
    }
    if ((res.status === 206 || res.ok) && isHtml(res) && !/\.html?$/i.test(file)) {
      await res.body?.cancel().catch(() => undefined);
      return this.htmlInstead(file);
    }
    if (res.status === 206) {
      await res.arrayBuffer();
      const total = parseContentRange(res.headers.get('content-range'))?.total;
      if (total !== undefined) return this.info(file, res, total);
      throw new FetchError(`Cannot tell the size of ${url}: the server does not expose Content-Range (CORS)`, url, 206, false);
    }
    if (res.status === 416) {
      await res.body?.cancel().catch(() => undefined);
      return this.info(file, res, 0);
    }
    if (res.ok) {
      const len = res.headers.get('content-length');
      await res.body?.cancel().catch(() => undefined);
      if (len !== null && /^\d+$/.test(len)) return this.info(file, res, Number(len));
      throw new FetchError(`Cannot tell the size of ${url}: no Content-Length`, url, res.status, false);
    }
    await res.body?.cancel().catch(() => undefined);
    this.fail(res, url, 'size');
  }

  /**
   * Exactly `length` bytes of `file` from `offset`. `fileSize` is what the plan expects: a server
   * reporting another total means the file changed under us. `onBytes` is called as bytes arrive.
   */
  async fetchRange(file: string, offset: number, length: number, fileSize: number, onBytes?: (n: number) => void): Promise<Uint8Array> {
    const r = await this.fetchRangeOrWhole(file, offset, length, fileSize, onBytes, false);
    return r as Uint8Array;
  }

  /**
   * fetchRange, except that when the server ignores Range (200 with the whole file) and `whole` is set,
   * the open response comes back as a WholeBody, so the caller takes every chunk from this one body
   * instead of asking again for each chunk (which would download the whole file once per chunk).
   */
  async fetchRangeOrWhole(file: string, offset: number, length: number, fileSize: number, onBytes?: (n: number) => void, whole = true): Promise<Uint8Array | WholeBody> {
    const url = this.url(file);
    const end = offset + length - 1;
    const what = `bytes ${offset}-${end}`;
    if (length === 0) return new Uint8Array(0);
    const ctl = new AbortController();
    const res = await this.request(file, { headers: { Range: `bytes=${offset}-${end}` } }, what, ctl);
    if (res.status === 200 && length < fileSize) this.rangesIgnored = true;
    if (res.status === 200 && whole) return this.wholeBody(res, url, fileSize, ctl);
    let skip = 0;
    if (res.status === 206) {
      const crHeader = res.headers.get('content-range');
      const cr = parseContentRange(crHeader);
      if (crHeader !== null && (!cr || cr.start !== offset || cr.end !== end)) {
        await res.body?.cancel().catch(() => undefined);
        throw new FetchError(`Bad Content-Range ${JSON.stringify(crHeader)} from ${url} for ${what}`, url, 206, true);
      }
      if (cr?.total !== undefined && cr.total !== fileSize) {
        await res.body?.cancel().catch(() => undefined);
        throw new FetchError(`${url} changed on the server while downloading: its size is now ${cr.total}, was ${fileSize}`, url, 206, false);
      }
    } else if (res.status === 200) {
      // The server ignores Range: stream the whole body and keep the window (slow for big files).
      skip = offset;
    } else {
      await res.body?.cancel().catch(() => undefined);
      this.fail(res, url, what);
    }
    return this.readBody(res, url, what, skip, length, ctl, onBytes);
  }

  /** The whole of `file` (`size` bytes expected) as one streamed body: for a server that ignores Range. */
  async fetchWhole(file: string, size: number): Promise<WholeBody> {
    const url = this.url(file);
    const ctl = new AbortController();
    const res = await this.request(file, {}, 'the whole file', ctl);
    if (res.status !== 200) {
      await res.body?.cancel().catch(() => undefined);
      this.fail(res, url, 'the whole file');
    }
    return this.wholeBody(res, url, size, ctl);
  }

  private async wholeBody(res: Response, url: string, size: number, ctl: AbortController): Promise<WholeBody> {
    const len = res.headers.get('content-length');
    if (len !== null && /^\d+$/.test(len) && Number(len) !== size && !res.headers.get('content-encoding')) {
      await res.body?.cancel().catch(() => undefined);
      throw new FetchError(`${url} changed on the server while downloading: its size is now ${len}, was ${size}`, url, 200, false);
    }
    return new WholeBody(this, res, url, size, ctl);
  }

  private async readBody(res: Response, url: string, what: string, skip: number, length: number, ctl: AbortController, onBytes?: (n: number) => void): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    if (!res.body) {
      const all = new Uint8Array(await res.arrayBuffer());
      if (all.length < skip + length) throw new FetchError(`Short response from ${url} (${what}): ${all.length} bytes`, url, res.status, true);
      out.set(all.subarray(skip, skip + length));
      onBytes?.(length);
      return out;
    }
    const body = new StallGuard(res.body, ctl, this.stallTimeoutMs, url, what, res.status);
    let pos = 0; // body bytes seen
    let filled = 0;
    try {
      while (filled < length) {
        const v = await body.next(filled, length);
        if (!v) break;
        const from = Math.max(skip, pos);
        const to = Math.min(skip + length, pos + v.length);
        if (to > from) {
          out.set(v.subarray(from - pos, to - pos), from - skip);
          filled += to - from;
          onBytes?.(to - from);
        }
        pos += v.length;
        if (res.status === 206 && pos > length) {
          throw new FetchError(`${url} sent more bytes than asked (${what})`, url, 206, true);
        }
      }
    } finally {
      await body.close(filled >= length);
    }
    if (filled < length) {
      throw new FetchError(
        `The connection was cut while downloading ${url} (${what}): got ${filled} of ${length} bytes`, url, res.status, true, true);
    }
    return out;
  }
}

/**
 * A response body read with a stall timer: no data for `ms` aborts the request (`ctl`) and the read then
 * fails as a stall. The timer runs from the first read and restarts with every chunk; `pause()` stops it
 * while the caller is busy (storing a chunk), `arm()` starts it again.
 */
class StallGuard {
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stalled = false;

  constructor(
    body: ReadableStream<Uint8Array>,
    private readonly ctl: AbortController,
    private readonly ms: number,
    private readonly url: string,
    private readonly what: string,
    private readonly status: number,
  ) {
    this.reader = body.getReader();
    this.arm();
  }

  arm(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.stalled = true;
      this.ctl.abort(new Error('stalled'));
      this.reader.cancel().catch(() => undefined);
    }, this.ms);
  }

  pause(): void {
    clearTimeout(this.timer);
  }

  /** The next chunk, or null at the end of the body; `got` of `of` bytes so far, for the error message. */
  async next(got: number, of: number): Promise<Uint8Array | null> {
    const { url, what } = this;
    let r: ReadableStreamReadResult<Uint8Array>;
    try {
      r = await this.reader.read();
    } catch (e) {
      if (this.stalled) throw this.stallError();
      throw new FetchError(
        isOffline()
          ? `You went offline while downloading ${url} (${what}).`
          : `The connection was lost while downloading ${url} (${what}) after ${got} of ${of} bytes: ${(e as Error)?.message ?? e}`,
        url, this.status, true, true);
    }
    // A stall cancels the reader, which may end the body instead of failing the read.
    if (this.stalled) throw this.stallError();
    if (r.done) return null;
    this.arm();
    return r.value;
  }

  private stallError(): FetchError {
    return new FetchError(`The download of ${this.url} (${this.what}) stalled: no data for ${Math.round(this.ms / 1000)} s`, this.url, this.status, true);
  }

  /** Stops the timer; `cancel` also releases the rest of the body. */
  async close(cancel: boolean): Promise<void> {
    clearTimeout(this.timer);
    if (cancel) await this.reader.cancel().catch(() => undefined);
  }
}

/** The whole body of a file from a server that ignores Range, read once, chunk by chunk. */
export class WholeBody {
  constructor(
    private readonly remote: Remote,
    private readonly res: Response,
    private readonly url: string,
    readonly size: number,
    private readonly ctl: AbortController,
  ) {}

  /**
   * Calls `onChunk(i, bytes)` for every chunk of `chunkSize` bytes, in order; awaited, so storing paces the
   * download. A body that stalls, breaks or ends short throws a retriable FetchError.
   */
  async chunks(chunkSize: number, onChunk: (index: number, bytes: Uint8Array) => Promise<void>, onBytes?: (n: number) => void): Promise<void> {
    const { url, size, ctl } = this;
    const what = 'the whole file (the server ignores Range)';
    const body = new StallGuard(this.res.body!, ctl, this.remote.stallTimeoutMs, url, what, 200);
    let index = 0;
    let chunk = new Uint8Array(Math.min(chunkSize, size));
    let filled = 0;
    let seen = 0;
    try {
      while (seen < size) {
        const read = await body.next(seen, size);
        if (!read) break;
        let v = read.subarray(0, size - seen);
        seen += v.length;
        onBytes?.(v.length);
        while (v.length > 0) {
          const take = Math.min(v.length, chunk.length - filled);
          chunk.set(v.subarray(0, take), filled);
          filled += take;
          v = v.subarray(take);
          if (filled === chunk.length) {
            // Storing paces the download: the wait for it is not a stall.
            body.pause();
            await onChunk(index++, chunk);
            body.arm();
            chunk = new Uint8Array(Math.max(0, Math.min(chunkSize, size - index * chunkSize)));
            filled = 0;
          }
        }
      }
    } finally {
      await body.close(true);
    }
    if (seen < size) throw new FetchError(`The connection was cut while downloading ${url} (${what}): got ${seen} of ${size} bytes`, url, 200, true, true);
  }

  cancel(): void {
    this.ctl.abort(new Error('not needed'));
    this.res.body?.cancel().catch(() => undefined);
  }
}
