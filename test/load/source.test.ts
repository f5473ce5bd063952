import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpSource, ModelLoadError, parseContentRange, resolveModelUrl } from '../../worker/load/source';
import { FolderSource } from '../../worker/load/source-node';
import { serveFiles, type TestServer } from './helpers';

const bytes = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) & 0xff);
const files = new Map<string, Uint8Array>([
  ['a.bin', bytes(1000)],
  ['sub/b.txt', new TextEncoder().encode('héllo 😀\n')],
  ['empty.bin', new Uint8Array(0)],
  ['secret.bin', bytes(10)],
]);

async function rejection(p: Promise<unknown>): Promise<ModelLoadError> {
  const e = await p.then(() => null, (err) => err);
  expect(e).toBeInstanceOf(ModelLoadError);
  return e as ModelLoadError;
}

describe('resolveModelUrl', () => {
  it('maps repo ids to Hugging Face resolve URLs', () => {
    expect(resolveModelUrl('Qwen/Qwen3-0.6B')).toBe('https://huggingface.co/Qwen/Qwen3-0.6B/resolve/main/');
    expect(resolveModelUrl('nvidia/Qwen3-8B-DMS-8x@abc123')).toBe('https://huggingface.co/nvidia/Qwen3-8B-DMS-8x/resolve/abc123/');
    expect(resolveModelUrl(' org/name.v2_x@refs/pr/1 ')).toBe('https://huggingface.co/org/name.v2_x/resolve/refs%2Fpr%2F1/');
  });
  it('uses full URLs as the base, with a trailing slash', () => {
    expect(resolveModelUrl('https://huggingface.co/org/name/resolve/main/')).toBe('https://huggingface.co/org/name/resolve/main/');
    expect(resolveModelUrl('http://127.0.0.1:8080/models/m')).toBe('http://127.0.0.1:8080/models/m/');
  });
  it('rejects anything else', () => {
    for (const bad of ['', 'justaname', 'a/b/c', 'org/name@', 'ftp://x/y', '/abs/path']) {
      expect(() => resolveModelUrl(bad), bad).toThrow(ModelLoadError);
    }
  });
});

describe('parseContentRange', () => {
  it('parses totals and unknown totals', () => {
    expect(parseContentRange('bytes 0-9/100')).toEqual({ start: 0, end: 9, total: 100 });
    expect(parseContentRange('bytes 5-5/*')).toEqual({ start: 5, end: 5, total: undefined });
    expect(parseContentRange('items 0-1/2')).toBeNull();
    expect(parseContentRange(null)).toBeNull();
  });
});

describe('HttpSource on a server that honours Range', () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await serveFiles(files, { status: { 'secret.bin': 403 } });
  });
  afterAll(() => srv.close());

  it('joins file names to the base URL', () => {
    const src = new HttpSource(srv.url + 'm');
    expect(src.url('sub/b.txt')).toBe(srv.url + 'm/sub/b.txt');
    expect(src.url('a b.json')).toBe(srv.url + 'm/a%20b.json');
  });

  it('reads sizes, ranges and text', async () => {
    const src = new HttpSource(srv.url);
    expect(await src.size('a.bin')).toBe(1000);
    expect(await src.read('a.bin', 10, 20)).toEqual(files.get('a.bin')!.subarray(10, 30));
    expect(await src.read('a.bin', 999, 1)).toEqual(files.get('a.bin')!.subarray(999));
    expect(await src.read('a.bin', 5, 0)).toEqual(new Uint8Array(0));
    expect(await src.text('sub/b.txt')).toBe('héllo 😀\n');
    expect(await src.exists('a.bin')).toBe(true);
    expect(await src.exists('nope.json')).toBe(false);
    const last = srv.log.filter((l) => l.method === 'GET' && l.path === 'a.bin').map((l) => l.range);
    expect(last).toEqual(['bytes=10-29', 'bytes=999-999']);
  });

  it('reports short reads past the end of the file', async () => {
    const src = new HttpSource(srv.url);
    expect((await rejection(src.read('a.bin', 990, 20))).message).toMatch(/Short read .*a\.bin.*got 10.*file size 1000/);
    const e = await rejection(src.read('a.bin', 1000, 4));
    expect(e.status).toBe(416);
    expect(e.message).toMatch(/past the end/);
  });

  it('gives ModelLoadError with URL and status for 404 and 403', async () => {
    const src = new HttpSource(srv.url);
    const e404 = await rejection(src.read('missing.safetensors', 0, 8));
    expect(e404.status).toBe(404);
    expect(e404.url).toBe(srv.url + 'missing.safetensors');
    expect(e404.message).toContain(`HTTP 404 not found for ${srv.url}missing.safetensors`);
    expect((await rejection(src.size('missing.safetensors'))).status).toBe(404);
    expect((await rejection(src.text('missing.json'))).status).toBe(404);
    const e403 = await rejection(src.read('secret.bin', 0, 4));
    expect(e403.status).toBe(403);
    expect(e403.message).toMatch(/HTTP 403 access denied .*secret\.bin/);
    await expect(src.exists('secret.bin')).rejects.toThrow(/403/);
  });

  it('rejects bad ranges', async () => {
    const src = new HttpSource(srv.url);
    await expect(src.read('a.bin', -1, 4)).rejects.toThrow(RangeError);
    await expect(src.read('a.bin', 0, 1.5)).rejects.toThrow(RangeError);
  });
});

describe('HttpSource on unhelpful servers', () => {
  it('falls back to a one-byte range for the size when HEAD is refused', async () => {
    const srv = await serveFiles(files, { noHead: true });
    try {
      const src = new HttpSource(srv.url);
      expect(await src.size('a.bin')).toBe(1000);
      expect(srv.log.some((l) => l.method === 'GET' && l.range === 'bytes=0-0')).toBe(true);
      expect(await src.exists('a.bin')).toBe(true);
      expect(await src.exists('zzz')).toBe(false);
    } finally {
      await srv.close();
    }
  });

  it('falls back when HEAD has no Content-Length', async () => {
    const srv = await serveFiles(files, { headWithoutLength: true });
    try {
      expect(await new HttpSource(srv.url).size('a.bin')).toBe(1000);
    } finally {
      await srv.close();
    }
  });

  it('handles a server that ignores Range: small bodies are kept, so one request serves all reads', async () => {
    const srv = await serveFiles(files, { ignoreRange: true });
    try {
      const src = new HttpSource(srv.url);
      expect(await src.read('a.bin', 100, 50)).toEqual(files.get('a.bin')!.subarray(100, 150));
      expect(await src.read('a.bin', 0, 8)).toEqual(files.get('a.bin')!.subarray(0, 8));
      expect(await src.size('a.bin')).toBe(1000);
      expect(srv.log.filter((l) => l.method === 'GET').length).toBe(1);
      expect((await rejection(src.read('a.bin', 998, 5))).message).toMatch(/past the end/);
    } finally {
      await srv.close();
    }
  });

  it('handles a server that ignores Range for large bodies without caching them', async () => {
    const srv = await serveFiles(files, { ignoreRange: true, noHead: true });
    try {
      const src = new HttpSource(srv.url, { maxCachedBody: 100 });
      expect(await src.read('a.bin', 300, 400)).toEqual(files.get('a.bin')!.subarray(300, 700));
      expect(await src.read('a.bin', 0, 1000)).toEqual(files.get('a.bin'));
      expect(await src.size('a.bin')).toBe(1000);
      expect(await src.read('a.bin', 999, 1)).toEqual(files.get('a.bin')!.subarray(999));
      expect(srv.log.filter((l) => l.method === 'GET').length).toBe(4);
      expect((await rejection(src.read('a.bin', 900, 200))).message).toMatch(/Short read/);
      // Small files are still kept.
      expect(await src.text('sub/b.txt')).toBe('héllo 😀\n');
    } finally {
      await srv.close();
    }
  });

  it('reports network failures; in a browser, CORS only when a no-cors request is answered, else "cannot reach"', async () => {
    // A port that was free a moment ago: nothing listens there.
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const src = new HttpSource(`http://127.0.0.1:${port}/m/`);
    const e = await rejection(src.read('x.bin', 0, 4));
    expect(e.message).toMatch(new RegExp(`Network error fetching http://127\\.0\\.0\\.1:${port}/m/x\\.bin`));
    expect(e.message).not.toMatch(/CORS/);
    const g = globalThis as { document?: unknown };
    g.document = {};
    try {
      // Nothing listens: the no-cors probe fails too, so the server cannot be reached (not CORS).
      const unreachable = (await rejection(src.size('x.bin'))).message;
      expect(unreachable).toMatch(/Cannot reach 127\.0\.0\.1/);
      expect(unreachable).not.toMatch(/CORS/);
      // The request fails but a no-cors one gets an (opaque) answer: that is CORS.
      const modes: (string | undefined)[] = [];
      const corsFetch: typeof fetch = async (_input, init) => {
        modes.push(init?.mode);
        if (init?.mode === 'no-cors') return new Response(null, { status: 200 });
        throw new TypeError('Failed to fetch');
      };
      const cors = (await rejection(new HttpSource('https://models.example/m/', { fetch: corsFetch }).size('x.bin'))).message;
      expect(cors).toMatch(/models\.example answered, but does not let this page read .*CORS/);
      expect(modes).toContain('no-cors');
      // The browser knows it is offline: say so, without probing.
      const nav = Object.getOwnPropertyDescriptor(globalThis, 'navigator');
      Object.defineProperty(globalThis, 'navigator', { value: { onLine: false }, configurable: true });
      try {
        expect((await rejection(new HttpSource('https://models.example/m/', { fetch: corsFetch }).size('x.bin'))).message).toMatch(/^You are offline/);
      } finally {
        if (nav) Object.defineProperty(globalThis, 'navigator', nav);
        else delete (globalThis as { navigator?: unknown }).navigator;
      }
    } finally {
      delete g.document;
    }
  });

  it('passes extra headers and uses a given fetch', async () => {
    const seen: string[] = [];
    const fake: typeof fetch = async (input, init) => {
      seen.push(`${String(input)} ${(init?.headers as Record<string, string>).Authorization}`);
      return new Response('{"a":1}', { status: 200 });
    };
    const src = new HttpSource('https://example.invalid/m', { fetch: fake, headers: { Authorization: 'Bearer t' } });
    expect(await src.text('config.json')).toBe('{"a":1}');
    expect(seen).toEqual(['https://example.invalid/m/config.json Bearer t']);
  });

  it('checks Content-Range of a 206 answer', async () => {
    const fake: typeof fetch = async () =>
      new Response(new Uint8Array(4), { status: 206, headers: { 'Content-Range': 'bytes 8-11/100' } });
    const src = new HttpSource('https://example.invalid/', { fetch: fake });
    expect((await rejection(src.read('f', 0, 4))).message).toMatch(/Bad Content-Range "bytes 8-11\/100"/);
  });
});

describe('FolderSource', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'webdms-src-'));
    for (const [name, data] of files) {
      await mkdir(join(dir, name, '..'), { recursive: true });
      await writeFile(join(dir, name), data);
    }
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('reads sizes, ranges and text', async () => {
    const src = new FolderSource(dir);
    expect(src.name).toBe(dir);
    expect(await src.size('a.bin')).toBe(1000);
    expect(await src.size('empty.bin')).toBe(0);
    expect(await src.read('a.bin', 123, 456)).toEqual(files.get('a.bin')!.subarray(123, 579));
    expect(await src.read('a.bin', 1000, 0)).toEqual(new Uint8Array(0));
    expect(await src.text('sub/b.txt')).toBe('héllo 😀\n');
    expect(await src.exists('a.bin')).toBe(true);
    expect(await src.exists('sub')).toBe(false);
    expect(await src.exists('nope')).toBe(false);
  });

  it('names missing files and short reads', async () => {
    const src = new FolderSource(dir);
    for (const p of [src.read('model.safetensors', 0, 8), src.size('model.safetensors'), src.text('model.safetensors')]) {
      const e = await rejection(p);
      expect(e.message).toContain(`Missing file model.safetensors in ${dir}`);
      expect(e.status).toBe(404);
    }
    expect((await rejection(src.read('a.bin', 990, 20))).message).toMatch(/past the end .*a\.bin: 20 bytes at 990, the file has 1000/);
  });

  it('refuses paths outside the folder', async () => {
    const src = new FolderSource(join(dir, 'sub'));
    await expect(src.text('../a.bin')).rejects.toThrow(/is refused in .*: it steps out of the model's folder/);
    await expect(src.exists('/etc/passwd')).rejects.toThrow(/is refused in .*: it is an absolute path/);
  });
});
