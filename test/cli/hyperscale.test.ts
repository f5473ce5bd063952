/** `dms generate --chains/--vote/--memory` and `dms hyperscale`, run as a user would, on the qwen3-dms fixture. */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { builtinTasks, parseTasks } from '../../cli/hyperscale';
import { extractAnswer } from '../../worker/hyperscale/answers';

const ROOT = new URL('../../', import.meta.url).pathname;
const DMS = join(ROOT, 'test/fixtures/golden/qwen3-dms');
const golden = JSON.parse(readFileSync(join(DMS, 'golden.json'), 'utf8')) as { prompt_ids: number[] };

function dms(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('node', ['scripts/dms.mjs', ...args], { cwd: ROOT, timeout: 300_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('dms generate --chains', () => {
  it('W chains in the JSON, chain 0 equals the single run with the same seed, and the vote names its rule', async () => {
    const common = ['--model', DMS, '--prompt-ids', golden.prompt_ids.join(','), '--max-new-tokens', '12', '--temperature', '1.2', '--seed', '5', '--kv', 'dms', '--json'];
    const [multi, single] = await Promise.all([dms('generate', ...common, '--chains', '3', '--vote'), dms('generate', ...common)]);
    expect(multi.code, multi.stderr).toBe(0);
    const m = JSON.parse(multi.stdout), s = JSON.parse(single.stdout);
    expect(m.chains).toHaveLength(3);
    for (const c of m.chains) {
      expect(Object.keys(c).sort()).toEqual(['answer', 'finishReason', 'generated', 'meanLogProb', 'text']);
      expect(c.generated.length).toBeGreaterThan(0);
    }
    expect(m.chains[0].generated).toEqual(s.generated);
    expect(new Set(m.chains.map((c: { generated: number[] }) => c.generated.join())).size).toBeGreaterThan(1);
    // The random fixture never states an answer: the highest-scored chain is kept.
    expect(m.vote.rule).toBe('logprob');
    expect(m.vote.answer).toBeNull();
    const best = m.chains.reduce((b: number, c: { meanLogProb: number }, i: number) => (c.meanLogProb > m.chains[b].meanLogProb ? i : b), 0);
    expect(m.vote.chain).toBe(best);
    expect(m.generated).toEqual(m.chains[best].generated);
    expect(m.kv.peakTokens).toBeLessThan(m.kv.peakTokensFull);
  });

  it('--memory lets the planner choose chains, length and policy within the budget', async () => {
    const r = await dms('generate', '--model', DMS, '--prompt-ids', golden.prompt_ids.join(','), '--memory', '0.25', '--temperature', '1', '--json', '--vote');
    expect(r.code, r.stderr).toBe(0);
    const o = JSON.parse(r.stdout);
    expect(o.plan.bytes).toBeLessThanOrEqual(0.25 * 1024 * 1024);
    expect(o.plan.budgetBytes).toBe(0.25 * 1024 * 1024);
    expect(o.chains).toHaveLength(o.plan.chains);
    expect(o.kv.policy).toBe(o.plan.policy);
    expect(Math.max(...o.chains.map((c: { generated: number[] }) => c.generated.length))).toBeLessThanOrEqual(o.plan.maxTokens);
    expect(r.stderr).toMatch(/plan: /);
    const bad = await dms('generate', '--model', DMS, '--prompt-ids', '1', '--memory', '1', '--chains', '2');
    expect(bad.code).toBe(2);
  });
});

describe('dms hyperscale', () => {
  it('sweeps policies, widths and lengths; full-cache peaks match the chains they held', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hs-'));
    const file = join(dir, 'tasks.jsonl');
    writeFileSync(file, [{ task: 'a', prompt_ids: golden.prompt_ids, answer: '7' }, { task: 'b', prompt_ids: golden.prompt_ids, answer: '8' }].map((o) => JSON.stringify(o)).join('\n'));
    const r = await dms('hyperscale', '--model', DMS, '--tasks', file, '--widths', '1,2', '--lengths', '4,8', '--kv', 'full,dms', '--temperature', '1', '--json', '--out', join(dir, 'out.json'));
    expect(r.code, r.stderr).toBe(0);
    const o = JSON.parse(r.stdout);
    expect(JSON.parse(readFileSync(join(dir, 'out.json'), 'utf8'))).toEqual(o);
    expect(o.points).toHaveLength(8);
    const P = golden.prompt_ids.length;
    for (const p of o.points) {
      expect(p.problems).toBe(2);
      expect(p.accuracy).toBe(0); // a random-weight model states no answer
      expect(p.chainTokens).toBeLessThanOrEqual(p.maxTokens);
      if (p.policy === 'full') {
        // Σ over chains of (prompt copy + fed tokens) x layers (2) x KV heads (2), averaged over problems.
        expect(p.peakTokens).toBeCloseTo(4 * p.chains * (P + p.chainTokens - 1), 6);
        const d = o.points.find((q: typeof p) => q.policy === 'dms' && q.chains === p.chains && q.maxTokens === p.maxTokens);
        expect(d.peakTokens).toBeLessThan(p.peakTokens);
      }
    }
  });

  it('built-in tasks have the default model\'s formats and correct answers', () => {
    const t = builtinTasks(['add', 'mul', 'vartrack'], 5, 3);
    expect(t).toHaveLength(15);
    for (const x of t.filter((x) => x.task === 'add')) {
      const [a, b] = x.prompt.match(/\d+/g)!.map(Number);
      expect(Number(x.answer)).toBe(a + b);
    }
    for (const x of t.filter((x) => x.task === 'mul')) {
      const [a, b] = x.prompt.match(/\d+/g)!.map(Number);
      expect(Number(x.answer)).toBe(a * b);
    }
    for (const x of t.filter((x) => x.task === 'vartrack')) {
      const env = new Map<string, number>();
      for (const [, v, rhs] of x.prompt.matchAll(/(\w+) = (\w+)\./g)) env.set(v, /^\d+$/.test(rhs) ? Number(rhs) : env.get(rhs)!);
      const target = x.prompt.match(/value of (\w+)\?/)![1];
      expect(String(env.get(target))).toBe(x.answer);
    }
    expect(builtinTasks(['add'], 3, 3)).toEqual(builtinTasks(['add'], 3, 3));
    expect(parseTasks('{"prompt":"What is 1 + 1?","answer":2}\n')).toEqual([{ task: 'task', prompt: 'What is 1 + 1?', answer: '2', promptIds: undefined }]);
    expect(() => parseTasks('{"prompt":"x"}')).toThrow(/answer/);
    expect(extractAnswer('<think>\n1 + 1\nresult: 2\n</think>\n\nThe answer is 2.')).toBe('2');
  });
});
