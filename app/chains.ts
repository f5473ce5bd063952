/**
 * Hyper-scaling mode in the chat page (docs/hyperscaling.md): a reply sampled as W parallel chains shows
 * the voted answer, and the chains side by side in a collapsed panel that fills in as they stream.
 */
import type { ChainVote } from '../worker/protocol';

export interface StoredChain {
  content: string;
  answer?: string | null;
  finishReason?: 'stop' | 'length' | 'abort';
}

/** One line about the vote: "Vote (majority): 42, 3 of 4 chains". */
export function voteLine(vote: ChainVote, chains: number): string {
  if (vote.rule === 'majority') return `Vote (majority): ${vote.answer}, ${vote.counts[vote.answer!] ?? 0} of ${chains} chains`;
  return `No chain stated a final answer; kept chain ${vote.chain + 1}, the one the model scored highest (mean log-prob)`;
}

/**
 * Paints `chains` into the message body of `el` (before its meta line): a <details> panel, collapsed by
 * default and kept open or closed across repaints, with one column per chain.
 */
export function paintChains(el: HTMLElement, chains: StoredChain[] | undefined, vote: ChainVote | undefined, streaming: boolean): void {
  const body = el.querySelector<HTMLElement>('.msg-body');
  let panel = el.querySelector<HTMLDetailsElement>('details.chains');
  if (!body || !chains || chains.length === 0) {
    panel?.remove();
    return;
  }
  if (!panel) {
    panel = document.createElement('details');
    panel.className = 'chains';
    panel.append(document.createElement('summary'), Object.assign(document.createElement('div'), { className: 'chains-grid' }));
    body.insertBefore(panel, body.querySelector('.msg-meta'));
  }
  const summary = panel.querySelector('summary')!;
  const done = chains.filter((c) => c.finishReason).length;
  summary.textContent = vote ? `${chains.length} chains · ${voteLine(vote, chains.length)}` : `${chains.length} chains${streaming ? ` · sampling (${done} done)` : ''}`;
  const grid = panel.querySelector<HTMLElement>('.chains-grid')!;
  grid.style.setProperty('--chains', String(Math.min(chains.length, 4)));
  while (grid.children.length < chains.length) {
    const col = document.createElement('section');
    col.className = 'chain';
    col.append(document.createElement('header'), Object.assign(document.createElement('pre'), { className: 'chain-text' }));
    grid.append(col);
  }
  chains.forEach((c, i) => {
    const col = grid.children[i] as HTMLElement;
    const win = vote && vote.chain === i;
    col.classList.toggle('chain-picked', !!win);
    const state = c.finishReason === 'stop' ? 'done' : c.finishReason === 'length' ? 'cut at max tokens' : c.finishReason === 'abort' ? 'stopped' : 'streaming';
    col.querySelector('header')!.textContent = `Chain ${i + 1} · ${state}${c.answer != null ? ` · answer ${c.answer}` : ''}${win ? ' · shown' : ''}`;
    col.querySelector('pre')!.textContent = c.content;
  });
}
