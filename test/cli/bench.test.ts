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
      for (const k of ['context', 'kv', 'decodeTokensPerSecond', 'prefillTokensPerSecond', 'bytesPerToken', 'bandwidthGBps', 'boundTokensPerSecond', 'fractionOfBound', 'kvBytes', 'dispatchesPerToken']) expect(row).toHaveProperty(k);
      expect(row.decodeTokensPerSecond).toBeGreaterThan(0);
      expect(row.fractionOfBound).toBeGreaterThan(0);
    }
    // tiny: 4 layers x 2 KV heads; full keeps all 192+ tokens, dms at 0.875 eviction keeps the window
    // (17) plus 1/8 of the rest.
    expect(full.residentTokens).toBeGreaterThanOrEqual(192 * 4 * 2);
    expect(dms.residentTokens).toBeLessThan(full.residentTokens / 3);
    expect(dms.bytesPerToken).toBeLessThan(full.bytesPerToken);
  });
});
