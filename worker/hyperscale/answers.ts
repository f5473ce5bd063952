/**
 * Final answers of reasoning chains and how several chains are aggregated (docs/hyperscaling.md).
 *
 * An answer is, in order of preference: the content of the last `\boxed{...}` (real reasoning models),
 * else the last "The answer is X." / "Final answer: X" line (the default model ends every task with
 * "The answer is X."). Chains whose answer can be checked are aggregated by majority vote; when no chain
 * states an answer, the chain the model itself scores highest (mean token log-probability) is kept.
 */

/** The text after the reasoning: everything after the last `</think>` (the whole text if there is none). */
function afterThinking(text: string): string {
  const i = text.lastIndexOf('</think>');
  return i >= 0 ? text.slice(i + '</think>'.length) : text;
}

/** Content of the last `\boxed{...}` with balanced braces, or null. */
export function lastBoxed(text: string): string | null {
  let found: string | null = null;
  let from = 0;
  for (;;) {
    const i = text.indexOf('\\boxed{', from);
    if (i < 0) return found;
    let depth = 1;
    let j = i + '\\boxed{'.length;
    for (; j < text.length && depth > 0; j++) {
      if (text[j] === '{') depth++;
      else if (text[j] === '}') depth--;
    }
    if (depth === 0) found = text.slice(i + '\\boxed{'.length, j - 1);
    from = i + 1;
  }
}

/** Canonical form for comparing answers: trimmed, no trailing period, no `$`, single spaces, no thousands commas in numbers. */
export function normalizeAnswer(a: string): string {
  let s = a.trim().replace(/\$/g, '').replace(/\s+/g, ' ');
  s = s.replace(/[.。]+$/, '').trim();
  if (/^-?\d{1,3}(,\d{3})+(\.\d+)?$/.test(s)) s = s.replace(/,/g, '');
  return s;
}

/** The chain's final answer, normalized, or null when it states none (e.g. it ran out of length). */
export function extractAnswer(text: string): string | null {
  const boxed = lastBoxed(text);
  if (boxed !== null && boxed.trim() !== '') return normalizeAnswer(boxed);
  const tail = afterThinking(text);
  const re = /(?:the (?:final )?answer is|final answer\s*:|answer\s*:)\s*([^\n]+)/gi;
  let last: string | null = null;
  for (const m of tail.matchAll(re)) last = m[1];
  if (last === null) return null;
  const a = normalizeAnswer(last);
  return a === '' ? null : a;
}

export interface VoteInput {
  answer: string | null;
  /** Mean log-probability of the chain's tokens under the model (higher = more confident). */
  meanLogProb: number;
}

export interface Vote {
  /** 'majority': most frequent stated answer (ties: higher summed mean log-prob, then first seen); 'logprob': no chain stated an answer, the highest-scored chain is kept. */
  rule: 'majority' | 'logprob';
  answer: string | null;
  /** Votes per stated answer. */
  counts: Record<string, number>;
  /** Index of the chain whose text represents the result (the best-scored chain with the winning answer). */
  chain: number;
}

export function vote(chains: VoteInput[]): Vote {
  if (chains.length === 0) throw new Error('vote: no chains');
  const counts: Record<string, number> = {};
  const score = new Map<string, number>();
  for (const c of chains) {
    if (c.answer === null) continue;
    counts[c.answer] = (counts[c.answer] ?? 0) + 1;
    score.set(c.answer, (score.get(c.answer) ?? 0) + c.meanLogProb);
  }
  const best = (idx: number[]) => idx.reduce((b, i) => (chains[i].meanLogProb > chains[b].meanLogProb ? i : b), idx[0]);
  const answers = Object.keys(counts);
  if (answers.length === 0) {
    const chain = best(chains.map((_, i) => i));
    return { rule: 'logprob', answer: null, counts, chain };
  }
  let win = answers[0];
  for (const a of answers.slice(1)) {
    if (counts[a] > counts[win] || (counts[a] === counts[win] && score.get(a)! > score.get(win)!)) win = a;
  }
  const chain = best(chains.map((c, i) => (c.answer === win ? i : -1)).filter((i) => i >= 0));
  return { rule: 'majority', answer: win, counts, chain };
}
