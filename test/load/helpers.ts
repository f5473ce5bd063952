/** Test helpers: a safetensors writer and a local HTTP file server that honours Range. */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { f32ToF16Bits } from '../../worker/model/dtype';

export interface TestTensor {
  name: string;
  dtype: 'F32' | 'F16' | 'BF16' | string;
  shape: number[];
  /** Values, converted to dtype (bf16 by round-to-nearest-even); or raw bytes for other dtypes. */
  data: ArrayLike<number> | Uint8Array;
}

function bf16Bits(x: number): number {
  const b = new Uint32Array(new Float32Array([x]).buffer)[0];
  if ((b & 0x7f800000) === 0x7f800000 && b & 0x7fffff) return (b >>> 16) | 0x40; // NaN stays NaN
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

function encode(t: TestTensor): Uint8Array {
  if (t.data instanceof Uint8Array) return t.data;
  const n = t.data.length;
  if (t.dtype === 'F32') return new Uint8Array(Float32Array.from(t.data).buffer);
  if (t.dtype !== 'F16' && t.dtype !== 'BF16') throw new Error(`give raw bytes for dtype ${t.dtype}`);
  const u16 = new Uint16Array(n);
  for (let i = 0; i < n; i++) u16[i] = t.dtype === 'F16' ? f32ToF16Bits(t.data[i]) : bf16Bits(t.data[i]);
  return new Uint8Array(u16.buffer);
}

/** The safetensors binary: u64 LE header length, JSON header (space-padded to 8 bytes), data. */
export function writeSafetensors(tensors: TestTensor[], metadata: Record<string, string> = { format: 'pt' }): Uint8Array {
  const blobs = tensors.map(encode);
  const header: Record<string, unknown> = { __metadata__: metadata };
  let off = 0;
  tensors.forEach((t, i) => {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + blobs[i].length] };
    off += blobs[i].length;
  });
  let json = JSON.stringify(header);
  while ((8 + new TextEncoder().encode(json).length) % 8) json += ' ';
  const hb = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + hb.length + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  let p = 8 + hb.length;
  for (const b of blobs) {
    out.set(b, p);
    p += b.length;
  }
  return out;
}

export interface ServerOptions {
  /** Answer 200 with the whole body to Range requests. */
  ignoreRange?: boolean;
  /** Answer 405 to HEAD. */
  noHead?: boolean;
  /** Omit Content-Length on HEAD. */
  headWithoutLength?: boolean;
  /** file → status to answer with (e.g. 403). */
  status?: Record<string, number>;
}

export interface TestServer {
  url: string;
  /** Every request: method, path and Range header. */
  log: { method: string; path: string; range?: string }[];
  close(): Promise<void>;
}

/** Serves `files` (path relative to the root → bytes) on 127.0.0.1 on a free port. */
export async function serveFiles(files: Map<string, Uint8Array>, opts: ServerOptions = {}): Promise<TestServer> {
  const log: TestServer['log'] = [];
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\//, '');
    const range = req.headers.range;
    log.push({ method: req.method ?? '', path, range });
    const forced = opts.status?.[path];
    if (forced) {
      res.writeHead(forced).end('no');
      return;
    }
    const body = files.get(path);
    if (!body) {
      res.writeHead(404).end('not found');
      return;
    }
    if (req.method === 'HEAD') {
      if (opts.noHead) {
        res.writeHead(405).end();
        return;
      }
      const h: Record<string, string> = { 'Accept-Ranges': 'bytes' };
      if (!opts.headWithoutLength) h['Content-Length'] = String(body.length);
      res.writeHead(200, h).end();
      return;
    }
    const m = range && !opts.ignoreRange ? /^bytes=(\d+)-(\d+)$/.exec(range) : null;
    if (m) {
      const a = Number(m[1]), b = Math.min(Number(m[2]), body.length - 1);
      if (a >= body.length) {
        res.writeHead(416, { 'Content-Range': `bytes */${body.length}` }).end();
        return;
      }
      res.writeHead(206, { 'Content-Range': `bytes ${a}-${b}/${body.length}`, 'Content-Length': String(b - a + 1) });
      res.end(Buffer.from(body.subarray(a, b + 1)));
      return;
    }
    res.writeHead(200, { 'Content-Length': String(body.length) });
    res.end(Buffer.from(body));
  };
  const server: Server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    log,
    close: () => new Promise<void>((resolve, reject) => {
      server.closeAllConnections();
      server.close((e) => (e ? reject(e) : resolve()));
    }),
  };
}
