/** `dms bench --shape tiny` runs here on the CPU adapter and reports every documented field. */
import { execFile } from 'node:child_process';
import { describe, expect, it } from 'vitest';

const ROOT = new URL('../../', import.meta.url).pathname;

describe('dms bench', () => {
  it('measures decode and prefill for full and dms caches against the bandwidth bound', async () => {
    const stdout = await new Promise<string>((resolve, reject) =>
      execFile('node', ['scripts/dms.mjs', 'bench', '--shape', 'tiny', '--weights', 'q4', '--context', '192', '--kv', 'full,dms', '--dms-window', '16', '--steps', '2', '--prefill', '8', '--json'], { cwd: ROOT, timeout: 300_000 }, (err, out, errOut) => (err ? reject(new Error(errOut)) : resolve(out))),
    );
    const r = JSON.parse(stdout);
    expect(r.adapter).toMatch(/\w/);
    expect(r.bandwidthGBps).toBeGreaterThan(0);
    expect(r.rows).toHaveLength(2);
    const [full, dms] = r.rows;
    for (const row of r.rows) {
      for (const k of ['context', 'kv', 'decodeTokensPerSecond', 'serialTokensPerSecond', 'prefillTokensPerSecond', 'bytesPerToken', 'bandwidthGBps', 'boundTokensPerSecond', 'fractionOfBound', 'kvBytes', 'dispatchesPerToken']) expect(row).toHaveProperty(k);
      expect(row.decodeTokensPerSecond).toBeGreaterThan(0);
      expect(row.serialTokensPerSecond).toBeGreaterThan(0);
      expect(row.fractionOfBound).toBeGreaterThan(0);
    }
    // tiny: 4 layers x 2 KV heads; full keeps all 192+ tokens, dms at 0.875 eviction keeps the window
    // (17) plus 1/8 of the rest.
    expect(full.residentTokens).toBeGreaterThanOrEqual(192 * 4 * 2);
    expect(dms.residentTokens).toBeLessThan(full.residentTokens / 3);
    expect(dms.bytesPerToken).toBeLessThan(full.bytesPerToken);
    // A decode layer is 7 dispatches (docs/contributing.md, "The decode step"): 4 layers + embed, lm_head, sample.
    for (const row of r.rows) expect(row.dispatchesPerToken).toBe(7 * 4 + 3);
    // The adapter has timestamp-query: a decode step's GPU time, and its kernels, every dispatch counted once.
    for (const row of r.rows) {
      expect(row.gpuStepMs).toBeGreaterThan(0);
      expect(row.kernels.reduce((n: number, k: { dispatches: number }) => n + k.dispatches, 0)).toBe(row.dispatchesPerToken - 1); // all but the sample
    }
    // The default K/V storage is f16: 2 x headDim (32) x 2 bytes read per resident token.
    expect(full.kvDtype).toBe('f16');
    expect(full.kvBytesRead).toBe(full.residentTokens * 2 * 32 * 2);
  });

  it('--kv-dtype f16,f32,q8,q4 runs each row in every storage; f32 reads twice the K/V bytes, q8 and q4 fewer; rows report the bytes per token', async () => {
    const stdout = await new Promise<string>((resolve, reject) =>
      execFile('node', ['scripts/dms.mjs', 'bench', '--shape', 'tiny', '--weights', 'q4', '--context', '96', '--kv', 'full', '--kv-dtype', 'f16,f32,q8,q4', '--steps', '1', '--prefill', '8', '--json'], { cwd: ROOT, timeout: 300_000 }, (err, out, errOut) => (err ? reject(new Error(errOut)) : resolve(out))),
    );
    const [f16, f32, q8, q4] = JSON.parse(stdout).rows;
    expect([f16.kvDtype, f32.kvDtype, q8.kvDtype, q4.kvDtype]).toEqual(['f16', 'f32', 'q8', 'q4']);
    expect(f32.residentTokens).toBe(f16.residentTokens);
    expect(f32.kvBytesRead).toBe(2 * f16.kvBytesRead);
    expect(f32.kvBytes).toBe(2 * f16.kvBytes);
    // tiny: head dim 32. K and V of a token and KV head: f16 2 x 64 B; q8 2 x (32 + 4); q4 2 x (16 + 4).
    expect([f16.kvBytesPerToken, f32.kvBytesPerToken, q8.kvBytesPerToken, q4.kvBytesPerToken]).toEqual([128, 256, 72, 40]);
    for (const r of [q8, q4]) expect(r.kvBytesRead).toBe(r.residentTokens * r.kvBytesPerToken);
  });

  it('--dms-rule fastdms measures the dms rows with own-token decisions, and says so; another rule is a usage error', async () => {
    const run = (rule: string) => new Promise<{ code: number; out: string; err: string }>((resolve) =>
      execFile('node', ['scripts/dms.mjs', 'bench', '--shape', 'tiny', '--weights', 'q4', '--context', '96', '--kv', 'dms', '--dms-window', '16', '--dms-rule', rule, '--steps', '1', '--prefill', '8', '--json'], { cwd: ROOT, timeout: 300_000 }, (err, out, errOut) => resolve({ code: err ? (err.code as number) : 0, out, err: errOut })),
    );
    const ok = await run('fastdms');
    expect(ok.code).toBe(0);
    const r = JSON.parse(ok.out);
    expect(r.dmsRule).toBe('fastdms');
    expect(r.rows).toHaveLength(1);
    expect(r.rows[0].decodeTokensPerSecond).toBeGreaterThan(0);
    const bad = await run('shift');
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--dms-rule must be one of nvidia, fastdms, got "shift"/);
  });
});
