/**
 * The chat page's suggestions for the embedded demo model (app/demo-model.ts) are things it does: each is
 * run through the CLI with greedy decoding on the shipped model, and its final line must be the right
 * answer, computed here from the prompt (the sum, the product, the variable's value).
 */
import { execFile } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { DEMO_SUGGESTIONS } from '../../app/demo-model';

const ROOT = new URL('../..', import.meta.url).pathname;

function generate(prompt: string): Promise<{ text: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      'node',
      ['scripts/dms.mjs', 'generate', '--model', 'default', '--prompt', prompt, '--chat', '--temperature', '0', '--max-new-tokens', '160', '--json'],
      { cwd: ROOT, timeout: 300_000 },
      (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout.slice(stdout.indexOf('{'))))),
    );
  });
}

/** The right answer to a suggestion, worked out from its text. */
function expected(prompt: string): string {
  const arith = /^What is (\d+) (\+|x) (\d+)\?$/.exec(prompt);
  if (arith) return String(arith[2] === '+' ? Number(arith[1]) + Number(arith[3]) : Number(arith[1]) * Number(arith[3]));
  const track = /^Read the text and track the variables\.\n(.*)\nWhat is the value of (\w+)\?$/.exec(prompt);
  if (track) {
    const vals = new Map<string, number>();
    for (const [, name, rhs] of track[1].matchAll(/(\w+) = (\w+)\./g)) vals.set(name, /^\d+$/.test(rhs) ? Number(rhs) : vals.get(rhs)!);
    return String(vals.get(track[2]));
  }
  // Finding a number in a short text: the text's only number.
  const needle = /^Read the text\.\n(.*)\nWhat is .*\?$/.exec(prompt);
  if (needle) {
    const nums = needle[1].match(/\d+/g) ?? [];
    if (nums.length === 1) return nums[0];
  }
  throw new Error(`no rule for the suggestion ${JSON.stringify(prompt)}`);
}

describe('the demo model does what its suggestions ask', () => {
  for (const s of DEMO_SUGGESTIONS) {
    it(s.label, async () => {
      const { text } = await generate(s.prompt);
      expect(text).toContain('</think>');
      expect(text.trim().split('\n').pop()).toBe(`The answer is ${expected(s.prompt)}.`);
    }, 300_000);
  }
});
