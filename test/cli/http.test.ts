/**
 * The CLI reading a model over HTTP from a misbehaving server on 127.0.0.1: a connection dropped
 * mid-file is retried (and said so), a server that never answers times out with the file named, a web
 * page instead of config.json is called what it is, and progress is reported for big files.
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

const ROOT = new URL('../../', import.meta.url).pathname;
const DMS = join(ROOT, 'test/fixtures/golden/qwen3-dms');

function dms(...args: string[]): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    execFile('node', ['scripts/dms.mjs', ...args], { cwd: ROOT, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}

type Handler = (req: IncomingMessage, res: ServerResponse, file: string, body: Uint8Array | undefined) => boolean | void;
const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

/** Serves `files` with Range; `fault` may answer a request itself (return true). */
async function serve(files: Map<string, Uint8Array>, fault: Handler = () => false): Promise<{ url: string; hits: string[] }> {
  const hits: string[] = [];
  const server = createServer((req, res) => {
    const file = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\/m\//, '');
    hits.push(`${req.method} ${file} ${req.headers.range ?? ''}`);
    const body = files.get(file);
    if (fault(req, res, file, body)) return;
    if (!body) return void res.writeHead(404).end('not found');
    if (req.method === 'HEAD') return void res.writeHead(200, { 'Content-Length': String(body.length) }).end();
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    if (!m) return void res.writeHead(200, { 'Content-Length': String(body.length) }).end(Buffer.from(body));
    const a = Number(m[1]), b = Math.min(Number(m[2]), body.length - 1);
    res.writeHead(206, { 'Content-Range': `bytes ${a}-${b}/${body.length}`, 'Content-Length': String(b - a + 1) }).end(Buffer.from(body.subarray(a, b + 1)));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/m/`, hits };
}

const fixture = () => new Map(readdirSync(DMS).map((f) => [f, new Uint8Array(readFileSync(join(DMS, f)))]));

describe('dms generate --model <URL>', () => {
  it('retries a connection dropped mid-file, says so, and gives the same tokens as the folder', async () => {
    let cuts = 2;
    const { url } = await serve(fixture(), (req, res, file, body) => {
      if (file !== 'model.safetensors' || req.method !== 'GET' || !req.headers.range || cuts <= 0 || !body) return false;
      const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range)!;
      const [a, b] = [Number(m[1]), Number(m[2])];
      if (b - a < 1000) return false; // let the header reads through
      cuts--;
      res.writeHead(206, { 'Content-Range': `bytes ${a}-${b}/${body.length}`, 'Content-Length': String(b - a + 1) });
      res.write(Buffer.from(body.subarray(a, a + 100)));
      setTimeout(() => res.destroy(), 20);
      return true;
    });
    const args = ['--prompt-ids', '5,6,7', '--max-new-tokens', '4', '--weights', 'f32', '--json'];
    const [net, local] = await Promise.all([dms('generate', '--model', url, ...args), dms('generate', '--model', DMS, ...args)]);
    expect(net.code, net.stderr).toBe(0);
    expect(net.stderr).toMatch(/\[retrying in [\d.]+ s \(attempt 2 of 5\): The connection was (lost|cut) while downloading http:\/\/127\.0\.0\.1:\d+\/m\/model\.safetensors/);
    expect(JSON.parse(net.stdout).generated).toEqual(JSON.parse(local.stdout).generated);
  });

  it('a server that never answers: each attempt times out, is reported, and the error names the file', async () => {
    const { url } = await serve(fixture(), () => true); // accept, never respond
    const r = await dms('generate', '--model', url, '--prompt-ids', '1', '--timeout', '1');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\[retrying in 0\.5 s \(attempt 2 of 5\): 127\.0\.0\.1:\d+ did not answer in time for http:\/\/127\.0\.0\.1:\d+\/m\/config\.json \(size\): no response after 1000 ms/);
    expect(r.stderr).toMatch(/error: .*config\.json.*no response after 1000 ms.* \(gave up after 5 attempts\)/);
    expect(r.ms).toBeLessThan(40_000);
  });

  it('a web page instead of config.json, and a missing model, are named as such', async () => {
    const page = await serve(new Map(), (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html' }).end('<!doctype html><title>Home</title>');
      return true;
    });
    const html = await dms('generate', '--model', page.url, '--prompt-ids', '1');
    expect(html.code).toBe(1);
    expect(html.stderr).toMatch(/config\.json at http:\/\/127\.0\.0\.1:\d+\/m\/config\.json: expected the file, the server answered with a web page/);
    const empty = await serve(new Map());
    const missing = await dms('generate', '--model', empty.url, '--prompt-ids', '1');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/config\.json was not found \(HTTP 404\)/);
  });

  it('reports download progress of a big weight file', async () => {
    const dir = join(ROOT, 'public/models/webdms-default');
    const { url } = await serve(new Map(readdirSync(dir).map((f) => [f, new Uint8Array(readFileSync(join(dir, f)))])));
    const r = await dms('generate', '--model', url, '--prompt-ids', '1', '--max-new-tokens', '1');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/\[download model\.safetensors: [\d.]+ MB of [\d.]+ MB \(100%\)\]/);
  });
});

describe('dms generate --model <URL> on a server that ignores Range', () => {
  it('downloads each file once, not once per read', async () => {
    const { url, hits } = await serve(fixture(), (req, res, _file, body) => {
      if (req.method !== 'GET' || !body) return false;
      res.writeHead(200, { 'Content-Length': String(body.length) }).end(Buffer.from(body));
      return true;
    });
    const r = await dms('generate', '--model', url, '--prompt-ids', '5,6,7', '--max-new-tokens', '2', '--weights', 'f32');
    expect(r.code, r.stderr).toBe(0);
    const gets = hits.filter((h) => h.startsWith('GET model.safetensors'));
    // The first read learns that Range is ignored; the file then comes whole, once.
    expect(gets.length).toBeLessThanOrEqual(2);
  });
});
