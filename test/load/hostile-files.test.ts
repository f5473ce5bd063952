/**
 * Model files and CLI arguments are untrusted input: shard names that leave the model's folder, configs
 * that are not JSON, dimensions or chain counts far past any GPU, tensors that share bytes, and token-id
 * lists with holes. Each is refused at once with an error that names the file or flag.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Engine } from '../../worker/engine/engine';
import { fileNameProblem } from '../../worker/load/file-name';
import { parseConfig, readModelConfig } from '../../worker/model/config';
import { PreflightError, preflight } from '../../worker/load/preflight';
import { listTensors, readHeader } from '../../worker/load/safetensors';
import { HttpSource } from '../../worker/load/source';
import { FolderSource } from '../../worker/load/source-node';
import { testGpu } from '../gpu';
import { serveFiles, writeSafetensors } from './helpers';

const ROOT = new URL('../../', import.meta.url).pathname;
const DMS = join(ROOT, 'test/fixtures/golden/qwen3-dms');
const QWEN3 = join(ROOT, 'test/fixtures/golden/qwen3');

function dms(...args: string[]): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    execFile('node', ['scripts/dms.mjs', ...args], { cwd: ROOT, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}

/** A copy of the qwen3-dms fixture with config.json changed by `edit`. */
function fixtureWith(edit: (c: Record<string, unknown>) => void): string {
  const dir = mkdtempSync(join(tmpdir(), 'webdms-hostile-'));
  for (const f of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors']) copyFileSync(join(DMS, f), join(dir, f));
  const c = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  edit(c);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(c));
  return dir;
}

const tensor = (name: string) => ({ name, dtype: 'F32', shape: [2], data: [1, 2] });

describe('shard names from an index are plain file names under the model', () => {
  it('fileNameProblem accepts shard names and refuses hosts, schemes, absolute paths and ..', () => {
    for (const ok of ['model-00001-of-00002.safetensors', 'sub/model.safetensors', 'webdms-00000.bin']) expect(fileNameProblem(ok), ok).toBeNull();
    for (const bad of ['//other-host/x.safetensors', 'https://evil.example/x', '/etc/passwd', '../x.safetensors', 'a/../../x', 'a//b', '.', 'C:\\x', 'x?y', 'x#y', '%2e%2e/x', '', 'a\nb']) {
      expect(fileNameProblem(bad), bad).not.toBeNull();
    }
  });

  it('over HTTP (the CLI and the engine) a weight_map naming another host is refused, and that host is never asked', async () => {
    const other = await serveFiles(new Map([['evil.safetensors', writeSafetensors([tensor('b')])]]));
    const otherHost = other.url.replace(/^http:/, ''); // //127.0.0.1:port/
    const index = { weight_map: { a: 'model-00001.safetensors', b: `${otherHost}evil.safetensors` } };
    const model = await serveFiles(new Map([
      ['m/model.safetensors.index.json', new TextEncoder().encode(JSON.stringify(index))],
      ['m/model-00001.safetensors', writeSafetensors([tensor('a')])],
    ]));
    try {
      await expect(listTensors(new HttpSource(`${model.url}m/`))).rejects.toThrow(/for tensor "b".*refused: it is an absolute path or names another host/);
      for (const bad of ['../m/model-00001.safetensors', 'https://127.0.0.1:1/x.safetensors']) {
        index.weight_map.b = bad;
        const m2 = await serveFiles(new Map([
          ['m/model.safetensors.index.json', new TextEncoder().encode(JSON.stringify(index))],
          ['m/model-00001.safetensors', writeSafetensors([tensor('a')])],
        ]));
        await expect(listTensors(new HttpSource(`${m2.url}m/`)), bad).rejects.toThrow(/refused/);
        expect(m2.log.filter((h) => !h.path.startsWith('m/'))).toEqual([]);
        await m2.close();
      }
      expect(other.log).toEqual([]);
    } finally {
      await model.close();
      await other.close();
    }
  });

  it('a local folder refuses them too', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'webdms-index-'));
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: '/etc/hostname' } }));
    await expect(listTensors(new FolderSource(dir))).rejects.toThrow(/"\/etc\/hostname", which is refused/);
  });
});

describe('config files', () => {
  it('a malformed config.json or generation_config.json error names the file; an HTML page says so', async () => {
    const bad = mkdtempSync(join(tmpdir(), 'webdms-cfg-'));
    copyFileSync(join(DMS, 'config.json'), join(bad, 'config.json'));
    writeFileSync(join(bad, 'generation_config.json'), '{"temperature": 0.7,');
    await expect(readModelConfig(new FolderSource(bad))).rejects.toThrow(/^generation_config\.json \(.*\) is not valid JSON/);
    writeFileSync(join(bad, 'config.json'), '<!doctype html><html><body>Welcome</body></html>');
    await expect(readModelConfig(new FolderSource(bad))).rejects.toThrow(/^config\.json \(.*\) is an HTML page, not JSON/);
    const r = await dms('generate', '--model', bad, '--prompt-ids', '1');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error: config\.json .* is an HTML page/);
  });

  it('huge dimensions are refused by the pre-flight in milliseconds, before anything is allocated', async () => {
    const base = JSON.parse(readFileSync(join(DMS, 'config.json'), 'utf8'));
    delete base.layer_types;
    const limits = { maxBufferSize: 2 ** 30, maxStorageBufferBindingSize: 2 ** 30 };
    for (const [k, v] of [['num_hidden_layers', 1e9], ['num_hidden_layers', 1e7], ['vocab_size', 1e15], ['intermediate_size', 2 ** 52]] as const) {
      const { config } = parseConfig({ ...base, [k]: v });
      const t0 = performance.now();
      expect(() => preflight(config, limits), `${k} ${v}`).toThrow(PreflightError);
      expect(performance.now() - t0, `${k} ${v}`).toBeLessThan(200);
    }
    const dir = fixtureWith((c) => {
      c.num_hidden_layers = 1e9;
      delete c.layer_types;
    });
    const t0 = performance.now();
    await expect(Engine.load(await testGpu(), new FolderSource(dir))).rejects.toThrow(/does not fit this GPU/);
    expect(performance.now() - t0).toBeLessThan(3000);
  });

  it('more parallel chains than rows in a step are refused before loading', async () => {
    const r = await dms('generate', '--model', DMS, '--prompt-ids', '1', '--chains', '100000');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/100000 parallel chains cannot run here/);
    expect(r.stderr).not.toMatch(/cold start/);
  });
});

describe('safetensors headers', () => {
  it('overlapping tensors are refused', async () => {
    const bytes = writeSafetensors([tensor('a'), tensor('b')]);
    // Point b's data_offsets at a's bytes: same length, so only the overlap is wrong.
    const headerText = new TextDecoder('latin1').decode(bytes);
    const at = headerText.indexOf('"data_offsets":[8,16]');
    expect(at).toBeGreaterThan(0);
    const patched = bytes.slice();
    patched.set(new TextEncoder().encode('"data_offsets":[4,12]'), at);
    const dir = mkdtempSync(join(tmpdir(), 'webdms-st-'));
    writeFileSync(join(dir, 'model.safetensors'), patched);
    await expect(readHeader(new FolderSource(dir), 'model.safetensors')).rejects.toThrow(/tensors "a" \[0, 8\] and "b" \[4, 12\] overlap/);
    writeFileSync(join(dir, 'model.safetensors'), bytes);
    expect([...(await readHeader(new FolderSource(dir), 'model.safetensors')).keys()]).toEqual(['a', 'b']);
  });
});

describe('CLI arguments', () => {
  it('--prompt-ids with an empty list or entry is a usage error, not token 0', async () => {
    for (const [ids, msg] of [['', /--prompt-ids is empty/], ['1,,2', /--prompt-ids: entry 2 of "1,,2" is empty/], ['1,x', /"x" is not a token id/], ['1,2,', /entry 3/]] as const) {
      const r = await dms('generate', '--model', DMS, '--prompt-ids', ids);
      expect(r.code, ids).toBe(2);
      expect(r.stderr, ids).toMatch(msg);
    }
  });

  it('--kv full with --kv-budget is refused; a budget the model\'s own full cache ignores is warned about', async () => {
    const r = await dms('generate', '--model', DMS, '--prompt-ids', '1', '--kv', 'full', '--kv-budget', '8');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--kv full keeps every token/);
    const p = await dms('perplexity', '--model', DMS, '--file', join(DMS, 'config.json'), '--kv', 'full', '--kv-budget', '8');
    expect(p.code).toBe(2);
    const w = await dms('generate', '--model', QWEN3, '--prompt-ids', '1,2', '--max-new-tokens', '1', '--kv-budget', '8', '--json');
    expect(w.code, w.stderr).toBe(0);
    expect(w.stderr).toMatch(/warning: --kv-budget 8 is ignored: this model has no DMS/);
    expect(JSON.parse(w.stdout).warnings).toEqual([expect.stringMatching(/--kv-budget 8 is ignored/)]);
  });
});
