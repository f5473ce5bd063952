/** `dms check` (the fast paths against the plain ones on this device, and the weight formats against the CPU) runs here on the CPU adapter, in every K/V storage type. */
import { execFile } from 'node:child_process';
import { describe, expect, it } from 'vitest';

const ROOT = new URL('../../', import.meta.url).pathname;

describe('dms check', () => {
  it('--kv-dtype f16,q8,q4: one case per storage type, prompt and policy, each within the tolerance', async () => {
    const stdout = await new Promise<string>((resolve, reject) =>
      execFile('node', ['scripts/dms.mjs', 'check', '--weights', 'q4', '--kv-dtype', 'f16,q8,q4', '--prompt', '24', '--steps', '2', '--json'], { cwd: ROOT, timeout: 300_000 }, (err, out, errOut) => (err ? reject(new Error(errOut)) : resolve(out))),
    );
    const r = JSON.parse(stdout);
    expect(r.cases.map((c: { kvDtype: string; kv: string }) => `${c.kvDtype} ${c.kv}`)).toEqual(['f16 full', 'f16 dms', 'q8 full', 'q8 dms', 'q4 full', 'q4 dms']);
    for (const c of r.cases) {
      expect(c.ok).toBe(true);
      expect(c.worst).toBeLessThanOrEqual(c.tolerance);
      expect(c.tolerance).toBe(c.kvDtype === 'f16' ? 2e-4 : c.kvDtype === 'q8' ? 2e-3 : 5e-3);
      expect(c.steps).toBe(2);
    }
    // The weight format against the CPU reference: decode matvec, tiled kernel, prefill GEMM.
    expect(r.weights.map((c: { weights: string; tokens: number }) => `${c.weights} ${c.tokens}`)).toEqual(['q4 1', 'q4 5', 'q4 37']);
    for (const c of r.weights) expect(c.ok && c.worst <= 1).toBe(true);
  });

  it('rejects an unknown K/V storage type', async () => {
    const err = await new Promise<string>((resolve) =>
      execFile('node', ['scripts/dms.mjs', 'check', '--kv-dtype', 'q2'], { cwd: ROOT, timeout: 60_000 }, (_e, _out, errOut) => resolve(errOut)),
    );
    expect(err).toMatch(/--kv-dtype: one or more of f16, f32, q8, q4, not "q2"/);
  });
});
