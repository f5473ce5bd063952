/**
 * A local HTTP server (127.0.0.1) that imitates Hugging Face's file layout for the weight-store tests:
 * `/<org>/<name>/resolve/<revision>/<file>`, Range requests, X-Repo-Commit, and for "LFS" files
 * (.safetensors) the SHA-256 as `X-Linked-ETag` / `ETag` with `X-Linked-Size`; small files get a
 * git-blob-like SHA-1 ETag, as on the Hub. CORS like the Hub. Faults are switched on per test:
 * a wrong declared hash, a connection cut mid-file, a slow body, a forced status, no CORS.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Repo {
  commit: string;
  files: Map<string, Uint8Array>;
}

export interface Hit {
  method: string;
  repo: string;
  file: string;
  range?: string;
  status: number;
}

export interface Faults {
  /** file → the SHA-256 to declare instead of the real one. */
  declaredSha: Map<string, string>;
  /** file → cut the connection after this many body bytes, for the next `times` GETs. */
  cut: Map<string, { afterBytes: number; times: number }>;
  /** Body pacing: `bytes` per `everyMs` (all GETs). */
  slow: { bytes: number; everyMs: number } | null;
  /** file → status to answer every request with. */
  status: Map<string, number>;
  /** Send no CORS headers at all. */
  noCors: boolean;
  /** Hide the SHA-256 headers (what a browser sees after the Hub's redirect of an LFS file to its CDN). */
  noShaHeaders: boolean;
  /** A plain static file server: no X-Repo-Commit, no X-Linked-*, an ETag per file from its bytes. */
  staticHost: boolean;
  /** Answer Range requests with 200 and the whole file, as many plain file servers do. */
  ignoreRange: boolean;
}

export interface Hub {
  url: string;
  repos: Map<string, Repo>;
  hits: Hit[];
  faults: Faults;
  /** The resolve base of a repo, e.g. http://127.0.0.1:1234/org/name/resolve/main/ */
  base(repo: string, revision?: string): string;
  resetFaults(): void;
  close(): Promise<void>;
}

const sha = (alg: 'sha256' | 'sha1', b: Uint8Array) => createHash(alg).update(b).digest('hex');
const isLfs = (file: string) => file.endsWith('.safetensors');

export async function startHub(initial: Record<string, Repo> = {}): Promise<Hub> {
  const repos = new Map(Object.entries(initial));
  const hits: Hit[] = [];
  const freshFaults = (): Faults => ({ declaredSha: new Map(), cut: new Map(), slow: null, status: new Map(), noCors: false, noShaHeaders: false, staticHost: false, ignoreRange: false });
  const hub = { repos, hits, faults: freshFaults() } as Hub;

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const f = hub.faults;
    const cors: Record<string, string> = f.noCors
      ? {}
      : {
          'Access-Control-Allow-Origin': '*',
          'Access-Control-Expose-Headers':
            'Content-Range, Content-Length, Accept-Ranges, ETag, X-Linked-ETag, X-Linked-Size, X-Repo-Commit',
        };
    if (req.method === 'OPTIONS') {
      res.writeHead(204, {
        ...cors,
        ...(f.noCors ? {} : { 'Access-Control-Allow-Methods': 'GET, HEAD, OPTIONS', 'Access-Control-Allow-Headers': 'Range, If-None-Match, Authorization' }),
      }).end();
      return;
    }
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const api = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)$/.exec(path);
    if (api) {
      // The Hub's tree listing: size, git oid, and for LFS files lfs.oid (the SHA-256).
      const r = repos.get(api[1]);
      hits.push({ method: req.method ?? '', repo: api[1], file: '(api tree)', status: r ? 200 : 404 });
      if (!r) return void res.writeHead(404, cors).end('[]');
      const list = [...r.files].map(([p, b]) => ({
        type: 'file', path: p, size: b.length, oid: sha('sha1', b),
        ...(isLfs(p) ? { lfs: { oid: f.declaredSha.get(p) ?? sha('sha256', b), size: b.length, pointerSize: 134 } } : {}),
      }));
      return void res.writeHead(200, { ...cors, 'Content-Type': 'application/json' }).end(JSON.stringify(list));
    }
    const m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(path);
    const hit: Hit = { method: req.method ?? '', repo: m?.[1] ?? '', file: m?.[3] ?? path, range: req.headers.range, status: 0 };
    hits.push(hit);
    const send = (status: number, headers: Record<string, string> = {}, body?: string) => {
      hit.status = status;
      res.writeHead(status, { ...cors, ...headers }).end(body);
    };
    const repo = m ? repos.get(m[1]) : undefined;
    if (!m || !repo) return send(401, { 'X-Error-Code': 'RepoNotFound' }, 'Repository not found');
    if (m[2] !== 'main' && m[2] !== repo.commit) return send(404, { 'X-Error-Code': 'RevisionNotFound' }, 'Revision not found');
    const file = m[3];
    const forced = f.status.get(file);
    if (forced) return send(forced, {}, 'forced');
    const body = repo.files.get(file);
    if (!body) return send(404, { 'X-Error-Code': 'EntryNotFound' }, 'Entry not found');

    const h: Record<string, string> = { 'Accept-Ranges': 'bytes', 'X-Repo-Commit': repo.commit, 'Content-Type': 'application/octet-stream' };
    if (f.staticHost) {
      delete h['X-Repo-Commit'];
      h['ETag'] = `W/"${sha('sha1', body).slice(0, 16)}"`;
    } else if (isLfs(file) && f.noShaHeaders) {
      h['ETag'] = `"${sha('sha1', body).slice(0, 32)}-1"`;
    } else if (isLfs(file)) {
      const s = f.declaredSha.get(file) ?? sha('sha256', body);
      h['X-Linked-ETag'] = `"${s}"`;
      h['X-Linked-Size'] = String(body.length);
      h['ETag'] = `"${s}"`;
    } else {
      h['ETag'] = `"${sha('sha1', body)}"`;
    }
    if (req.method === 'HEAD') return send(200, { ...h, 'Content-Length': String(body.length) });

    let a = 0;
    let b = body.length - 1;
    let status = 200;
    const r = req.headers.range && !f.ignoreRange ? /^bytes=(\d+)-(\d*)$/.exec(req.headers.range) : null;
    if (r) {
      a = Number(r[1]);
      b = r[2] === '' ? body.length - 1 : Math.min(Number(r[2]), body.length - 1);
      if (a >= body.length) return send(416, { 'Content-Range': `bytes */${body.length}` });
      status = 206;
      h['Content-Range'] = `bytes ${a}-${b}/${body.length}`;
    }
    const part = body.subarray(a, b + 1);
    hit.status = status;
    res.writeHead(status, { ...cors, ...h, 'Content-Length': String(part.length) });
    const cut = f.cut.get(file);
    let limit = part.length;
    let cutNow = false;
    if (cut && cut.times > 0 && cut.afterBytes < part.length) {
      cut.times--;
      limit = cut.afterBytes;
      cutNow = true;
    }
    const step = f.slow?.bytes ?? limit;
    const every = f.slow?.everyMs ?? 0;
    let pos = 0;
    const pump = () => {
      if (res.destroyed) return;
      if (pos >= limit) {
        if (cutNow) res.destroy();
        else res.end();
        return;
      }
      const n = Math.min(step, limit - pos);
      res.write(Buffer.from(part.subarray(pos, pos + n)));
      pos += n;
      if (every > 0) setTimeout(pump, every);
      else setImmediate(pump);
    };
    pump();
  };

  const server: Server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  hub.url = `http://127.0.0.1:${port}/`;
  hub.base = (repo, revision = 'main') => `${hub.url}${repo}/resolve/${revision}/`;
  hub.resetFaults = () => {
    hub.faults = freshFaults();
  };
  hub.close = () =>
    new Promise<void>((resolve, reject) => {
      server.closeAllConnections();
      server.close((e) => (e ? reject(e) : resolve()));
    });
  return hub;
}

/** Deterministic pseudo-random bytes. */
export function noise(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

export const sha256Of = (b: Uint8Array): string => sha('sha256', b);
