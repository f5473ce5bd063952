/** The CLI contract (`npm run -s dms -- ...`), run as a user would, on real checkpoint folders. */
import { execFile } from 'node:child_process';
import { writeFileSync, mkdtempSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = new URL('../../', import.meta.url).pathname;
const STORIES = join(ROOT, '../shared/models/stories260K');
const DMS = join(ROOT, 'test/fixtures/golden/qwen3-dms');

function dms(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('node', ['scripts/dms.mjs', ...args], { cwd: ROOT, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('dms generate', () => {
  it('reports a cold start from a checkpoint and a warm start from its converted form', async () => {
    const out = mkdtempSync(join(tmpdir(), 'webdms-cli-q4-'));
    const cold = await dms('generate', '--model', DMS, '--prompt-ids', '1,2,3', '--max-new-tokens', '2', '--weights', 'q4');
    expect(cold.code, cold.stderr).toBe(0);
    expect(cold.stderr).toMatch(/\[cold start [\d.]+ s: [\d.]+ [KM]B of checkpoint read, quantized to q4 on the GPU/);
    expect((await dms('convert', '--model', DMS, '--weights', 'q4', '--out', out)).code).toBe(0);
    const warm = await dms('generate', '--model', out, '--prompt-ids', '1,2,3', '--max-new-tokens', '2');
    expect(warm.code, warm.stderr).toBe(0);
    expect(warm.stderr).toMatch(/\[warm start [\d.]+ s: [\d.]+ [KM]B of converted q4 weights read\]/);
    expect(warm.stdout).toBe(cold.stdout);
    rmSync(out, { recursive: true, force: true });
  });

  it.skipIf(!existsSync(STORIES))('generates from a real checkpoint folder by token ids, with the documented JSON', async () => {
    const r = await dms('generate', '--model', STORIES, '--prompt-ids', '1', '--max-new-tokens', '8', '--weights', 'f32', '--json');
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.generated).toHaveLength(8);
    expect(out.generated.every((id: number) => Number.isInteger(id) && id >= 0 && id < 512)).toBe(true);
    for (const k of ['policy', 'tokensSeen', 'peakTokens', 'peakTokensFull', 'tokenReads', 'tokenReadsFull', 'compression']) expect(out.kv).toHaveProperty(k);
    for (const k of ['prefillMs', 'decodeMs', 'decodeTokensPerSecond']) expect(typeof out.timing[k]).toBe('number');
    expect(out.adapter).toMatch(/\w/);
    // Greedy is deterministic: the same command gives the same tokens.
    const again = JSON.parse((await dms('generate', '--model', STORIES, '--prompt-ids', '1', '--max-new-tokens', '8', '--weights', 'f32', '--json')).stdout);
    expect(again.generated).toEqual(out.generated);
  });

  it('chats with a DMS checkpoint under --kv dms and reports compression; sampling is seeded', async () => {
    const run = (seed: string) => dms('generate', '--model', DMS, '--prompt', 'Hello there', '--chat', '--max-new-tokens', '24', '--kv', 'dms', '--temperature', '0.9', '--seed', seed, '--json');
    const [a, b, c] = await Promise.all([run('7'), run('7'), run('8')]);
    expect(a.code, a.stderr).toBe(0);
    const [ja, jb, jc] = [a, b, c].map((r) => JSON.parse(r.stdout));
    expect(ja.kv.policy).toBe('dms');
    expect(ja.kv.peakTokens).toBeLessThan(ja.kv.peakTokensFull);
    expect(ja.generated).toEqual(jb.generated);
    expect(jc.generated).not.toEqual(ja.generated);
    expect(typeof ja.text).toBe('string');
  });

  it('--kv-dtype: f16 K/V by default, f32 on request; the JSON reports the dtype and its bytes', async () => {
    const run = (...extra: string[]) => dms('generate', '--model', DMS, '--prompt-ids', '396,84,82,259,198,84', '--max-new-tokens', '6', '--kv', 'full', '--weights', 'f32', '--json', ...extra);
    const [d, h, f] = await Promise.all([run(), run('--kv-dtype', 'f16'), run('--kv-dtype', 'f32')]);
    expect(d.code, d.stderr).toBe(0);
    expect(f.code, f.stderr).toBe(0);
    const [jd, jh, jf] = [d, h, f].map((r) => JSON.parse(r.stdout));
    expect(jd.kv.kvDtype).toBe('f16');
    expect(jh.kv).toEqual(jd.kv);
    expect(jf.kv.kvDtype).toBe('f32');
    // qwen3-dms: head_dim 32; K and V of one token and KV head: 2 x 32 x 2 bytes in f16, x 4 bytes in f32.
    expect(jd.kv.bytesPerToken).toBe(128);
    expect(jf.kv.bytesPerToken).toBe(256);
    expect(jd.kv.peakTokens).toBe(jf.kv.peakTokens);
    expect(jf.kv.peakBytes).toBe(2 * jd.kv.peakBytes);
    expect(jd.kv.allocatedBytes).toBeLessThan(jf.kv.allocatedBytes);
    const bad = await run('--kv-dtype', 'bf16');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--kv-dtype must be one of f16, f32/);
  });

  it('errors go to stderr with a non-zero exit', async () => {
    const missing = await dms('generate', '--model', '/nonexistent/model', '--prompt-ids', '1');
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/no such folder/);
    const usage = await dms('generate', '--model', DMS, '--prompt-ids', '1', '--kv', 'tova');
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/--kv-budget/);
    const bad = await dms('generate', '--model', DMS, '--prompt-ids', '1,99999');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/outside the vocabulary/);
    const long = await dms('generate', '--model', DMS, '--prompt-ids', Array(40).fill(5).join(','), '--max-context', '32');
    expect(long.stderr).toMatch(/context of 32/);
  });
});

describe('dms generate --messages', () => {
  it('fits a conversation into the context, dropping the oldest turns, and says so on stderr and in the JSON', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'webdms-msgs-'));
    const file = join(dir, 'chat.json');
    const turn = (i: number) => [{ role: 'user', content: `question ${i}: ${'tell me more '.repeat(6)}` }, { role: 'assistant', content: `answer ${i}: ${'and so on '.repeat(6)}` }];
    writeFileSync(file, JSON.stringify([{ role: 'system', content: 'Be brief.' }, ...turn(1), ...turn(2), ...turn(3), { role: 'user', content: 'last question' }]));
    const r = await dms('generate', '--model', DMS, '--messages', file, '--max-context', '128', '--max-new-tokens', '4', '--json');
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.dropped.messages).toBeGreaterThanOrEqual(2);
    expect(out.dropped.messages % 2).toBe(0);
    expect(out.dropped.tokens).toBeGreaterThan(0);
    expect(out.promptTokens).toBeLessThanOrEqual(128 - 4);
    expect(r.stderr).toMatch(/\[Earlier turns no longer fit: \d+ tokens dropped/);
    // One that fits reports nothing dropped.
    writeFileSync(file, JSON.stringify([{ role: 'user', content: 'hi' }]));
    const small = JSON.parse((await dms('generate', '--model', DMS, '--messages', file, '--max-new-tokens', '2', '--json')).stdout);
    expect(small.dropped).toBeNull();
    writeFileSync(file, '[{"role": "robot", "content": 1}]');
    const bad = await dms('generate', '--model', DMS, '--messages', file);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/expected a non-empty JSON list/);
  });
});

describe('dms perplexity', () => {
  it('scores a text file under full and dms caches', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ppl-'));
    const file = join(dir, 'text.txt');
    writeFileSync(file, 'The quick brown fox jumps over the lazy dog. '.repeat(6));
    const full = await dms('perplexity', '--model', DMS, '--file', file, '--kv', 'full', '--json');
    const evict = await dms('perplexity', '--model', DMS, '--file', file, '--kv', 'dms', '--json');
    expect(full.code, full.stderr).toBe(0);
    const [jf, jd] = [JSON.parse(full.stdout), JSON.parse(evict.stdout)];
    expect(jf.ppl).toBeGreaterThan(1);
    expect(jf.tokens).toBeGreaterThan(20);
    expect(jd.kv.peakTokens).toBeLessThan(jf.kv.peakTokens);
    expect(jd.ppl).not.toBe(jf.ppl);
    // f32 K/V: the same tokens, a perplexity within the f16 rounding of the default's.
    const exact = await dms('perplexity', '--model', DMS, '--file', file, '--kv', 'full', '--kv-dtype', 'f32', '--json');
    expect(exact.code, exact.stderr).toBe(0);
    const je = JSON.parse(exact.stdout);
    expect(jf.kv.kvDtype).toBe('f16');
    expect(je.kv.kvDtype).toBe('f32');
    expect(je.tokens).toBe(jf.tokens);
    expect(Math.abs(je.ppl - jf.ppl) / jf.ppl).toBeLessThan(1e-2);
  });
});
