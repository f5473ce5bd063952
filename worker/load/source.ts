/**
 * Where model files come from: an interface with byte-range reads, and its HTTP implementation
 * (Hugging Face `resolve` URLs or any static server). Browser-safe: no Node imports here; the local
 * folder source lives in ./source-node.ts.
 */

import { fileNameProblem } from './file-name';
import { explainNetworkFailure } from './net-error';

export interface ModelSource {
  /** For messages: the URL or folder. */
  readonly name: string;
  /** Byte size of a file. */
  size(file: string): Promise<number>;
  /** Exactly `length` bytes of `file` from `offset` (an error if the file is shorter). */
  read(file: string, offset: number, length: number): Promise<Uint8Array>;
  text(file: string): Promise<string>;
  exists(file: string): Promise<boolean>;
}

export class ModelLoadError extends Error {
  constructor(
    message: string,
    readonly url?: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'ModelLoadError';
  }
}

/**
 * A model spec → base URL ending in '/':
 * - `http(s)://…` is taken as the base;
 * - `org/name` or `org/name@revision` → `https://huggingface.co/org/name/resolve/<revision or main>/`.
 */
export function resolveModelUrl(spec: string): string {
  const s = spec.trim();
  if (/^https?:\/\//i.test(s)) {
    let url: URL;
    try {
      url = new URL(s);
    } catch {
      throw new ModelLoadError(`Invalid model URL ${JSON.stringify(spec)}`);
    }
    const out = url.toString();
    return out.endsWith('/') ? out : out + '/';
  }
  const m = /^([A-Za-z0-9][\w.-]*)\/([A-Za-z0-9][\w.-]*)(?:@([^\s@]+))?$/.exec(s);
  if (!m) {
    throw new ModelLoadError(
      `Invalid model ${JSON.stringify(spec)}: expected an http(s) URL or a Hugging Face repo id "org/name" (optionally "org/name@revision")`,
    );
  }
  const [, org, name, revision] = m;
  return `https://huggingface.co/${org}/${name}/resolve/${encodeURIComponent(revision ?? 'main')}/`;
}


/** Above this, a server that ignores Range (200 with the whole body) is not worth caching. */
const MAX_CACHED_BODY = 64 * 1024 * 1024;

export interface HttpSourceOptions {
  /** Defaults to globalThis.fetch. */
  fetch?: typeof fetch;
  /** Extra request headers (e.g. Authorization). */
  headers?: Record<string, string>;
  /** Largest whole body kept when a server ignores Range (default 64 MiB). */
  maxCachedBody?: number;
}

export class HttpSource implements ModelSource {
  readonly name: string;
  private readonly base: string;
  private readonly fetchFn: typeof fetch;
  private readonly headers: Record<string, string>;
  private readonly maxCachedBody: number;
  private readonly sizes = new Map<string, Promise<number>>();
  /** Whole bodies of small files from servers that ignored a Range request. */
  private readonly bodies = new Map<string, Uint8Array>();

  constructor(baseUrl: string, opts: HttpSourceOptions = {}) {
    this.base = resolveModelUrl(baseUrl);
    this.name = this.base;
    this.fetchFn = opts.fetch ?? ((...a: Parameters<typeof fetch>) => globalThis.fetch(...a));
    this.headers = opts.headers ?? {};
    this.maxCachedBody = opts.maxCachedBody ?? MAX_CACHED_BODY;
  }

  /** The URL of `file` under the base; a name that would leave it (another host, a scheme, ..) is refused. */
  url(file: string): string {
    const problem = fileNameProblem(file);
    if (problem) throw new ModelLoadError(`Refusing to fetch ${JSON.stringify(file)} for ${this.base}: ${problem}`);
    return new URL(file.split('/').map(encodeURIComponent).join('/'), this.base).toString();
  }

  private async request(file: string, init: RequestInit): Promise<Response> {
    const url = this.url(file);
    let res: Response;
    try {
      res = await this.fetchFn(url, { ...init, headers: { ...this.headers, ...(init.headers as Record<string, string>) } });
    } catch (e) {
      const f = await explainNetworkFailure(url, 'fetch', (e as Error)?.message ?? String(e), { probe: this.fetchFn });
      throw new ModelLoadError(f.kind === 'network' ? `Network error fetching ${url}: ${(e as Error)?.message ?? e}` : f.message, url);
    }
    return res;
  }

  private fail(res: Response, url: string, what: string): never {
    const reason =
      res.status === 404 ? 'not found' :
      res.status === 401 || res.status === 403 ? 'access denied (a gated or private repo needs a token)' :
      res.status === 416 ? 'range not satisfiable' : res.statusText || 'error';
    throw new ModelLoadError(`HTTP ${res.status} ${reason} for ${url} (${what})`, url, res.status);
  }

  async exists(file: string): Promise<boolean> {
    const res = await this.request(file, { method: 'HEAD' });
    if (res.ok) return true;
    if (res.status === 404) return false;
    if (res.status === 405) {
      // No HEAD: try a one-byte range.
      const r2 = await this.request(file, { headers: { Range: 'bytes=0-0' } });
      await r2.body?.cancel();
      if (r2.ok) return true;
      if (r2.status === 404) return false;
      this.fail(r2, this.url(file), 'exists');
    }
    this.fail(res, this.url(file), 'exists');
  }

  size(file: string): Promise<number> {
    let p = this.sizes.get(file);
    if (!p) {
      p = this.fetchSize(file);
      this.sizes.set(file, p);
      p.catch(() => this.sizes.delete(file));
    }
    return p;
  }

  private async fetchSize(file: string): Promise<number> {
    const url = this.url(file);
    const head = await this.request(file, { method: 'HEAD' });
    if (head.status === 404 || head.status === 401 || head.status === 403) this.fail(head, url, 'size');
    if (head.ok) {
      const len = head.headers.get('content-length');
      const enc = head.headers.get('content-encoding');
      if (len !== null && /^\d+$/.test(len) && (!enc || enc === 'identity')) return Number(len);
    }
    // Fallback: a one-byte range and the total in Content-Range.
    const res = await this.request(file, { headers: { Range: 'bytes=0-0' } });
    if (res.status === 206) {
      await res.arrayBuffer();
      const total = parseContentRange(res.headers.get('content-range'))?.total;
      if (total !== undefined) return total;
      throw new ModelLoadError(`Cannot tell the size of ${url}: no total in Content-Range`, url, 206);
    }
    if (res.ok) {
      // Range ignored: the whole body is coming. Do not download a large file just to learn its size.
      const len = res.headers.get('content-length');
      if (len !== null && /^\d+$/.test(len) && Number(len) > this.maxCachedBody) {
        await res.body?.cancel();
        return Number(len);
      }
      const body = new Uint8Array(await res.arrayBuffer());
      if (body.length <= this.maxCachedBody) this.bodies.set(file, body);
      return body.length;
    }
    if (res.status === 416) return 0; // empty file: no byte 0 to return
    this.fail(res, url, 'size');
  }

  async read(file: string, offset: number, length: number): Promise<Uint8Array> {
    checkRange(offset, length);
    const url = this.url(file);
    const cached = this.bodies.get(file);
    if (cached) return sliceExact(cached, offset, length, url);
    if (length === 0) return new Uint8Array(0);
    const end = offset + length - 1;
    const res = await this.request(file, { headers: { Range: `bytes=${offset}-${end}` } });
    if (res.status === 206) {
      // Content-Range may be unreadable in a browser when the server does not expose it (CORS): then only
      // the body length is checked.
      const crHeader = res.headers.get('content-range');
      const cr = parseContentRange(crHeader);
      if (crHeader !== null && (!cr || cr.start !== offset)) {
        await res.body?.cancel();
        throw new ModelLoadError(
          `Bad Content-Range ${JSON.stringify(res.headers.get('content-range'))} from ${url} for bytes=${offset}-${end}`, url, 206);
      }
      if (cr?.total !== undefined && !this.sizes.has(file)) this.sizes.set(file, Promise.resolve(cr.total));
      const body = new Uint8Array(await res.arrayBuffer());
      if (body.length !== length) {
        throw new ModelLoadError(
          `Short read from ${url}: asked bytes ${offset}-${end} (${length} bytes), got ${body.length}` +
            (cr?.total !== undefined ? ` (file size ${cr.total})` : ''), url, 206);
      }
      return body;
    }
    if (res.status === 200) {
      // The server ignored Range and sends the whole file. Stream it, keeping only the asked window.
      return this.readWindowFromFullBody(res, file, offset, length, url);
    }
    if (res.status === 416) {
      await res.body?.cancel();
      throw new ModelLoadError(`Read past the end of ${url}: bytes ${offset}-${end}`, url, 416);
    }
    await res.body?.cancel();
    this.fail(res, url, `bytes ${offset}-${end}`);
  }

  private async readWindowFromFullBody(res: Response, file: string, offset: number, length: number, url: string): Promise<Uint8Array> {
    const declared = Number(res.headers.get('content-length'));
    const small = Number.isFinite(declared) && declared > 0 && declared <= this.maxCachedBody;
    if (small || !res.body) {
      const all = new Uint8Array(await res.arrayBuffer());
      if (all.length <= this.maxCachedBody) this.bodies.set(file, all);
      if (!this.sizes.has(file)) this.sizes.set(file, Promise.resolve(all.length));
      return sliceExact(all, offset, length, url);
    }
    const out = new Uint8Array(length);
    let pos = 0; // bytes of the body seen so far
    let filled = 0;
    const reader = res.body.getReader();
    try {
      while (filled < length) {
        const { done, value } = await reader.read();
        if (done) break;
        const chunkEnd = pos + value.length;
        const from = Math.max(offset, pos), to = Math.min(offset + length, chunkEnd);
        if (to > from) {
          out.set(value.subarray(from - pos, to - pos), from - offset);
          filled += to - from;
        }
        pos = chunkEnd;
      }
    } finally {
      await reader.cancel().catch(() => {});
    }
    if (filled < length) {
      throw new ModelLoadError(`Short read from ${url}: asked ${length} bytes at ${offset}, the file has ${pos}`, url, 200);
    }
    return out;
  }

  async text(file: string): Promise<string> {
    const url = this.url(file);
    const cached = this.bodies.get(file);
    if (cached) return new TextDecoder().decode(cached);
    const res = await this.request(file, {});
    if (!res.ok) {
      await res.body?.cancel();
      this.fail(res, url, 'text');
    }
    return res.text();
  }
}

export function checkRange(offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
    throw new RangeError(`Invalid byte range: offset ${offset}, length ${length}`);
  }
}

function sliceExact(body: Uint8Array, offset: number, length: number, name: string): Uint8Array {
  if (offset + length > body.length) {
    throw new ModelLoadError(`Read past the end of ${name}: ${length} bytes at ${offset}, the file has ${body.length}`, name);
  }
  return body.slice(offset, offset + length);
}

/** `bytes a-b/total` or `bytes a-b/*`. */
export function parseContentRange(h: string | null): { start: number; end: number; total?: number } | null {
  if (!h) return null;
  const m = /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(h);
  if (!m) return null;
  return { start: Number(m[1]), end: Number(m[2]), total: m[3] === '*' ? undefined : Number(m[3]) };
}
