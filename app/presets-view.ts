/**
 * The preset models as rows of buttons, for the model dialog and the first-run screen: name, parameters,
 * download size and GPU memory needed, and whether it suits this browser by memory (the pre-flight's fit
 * on this adapter's limits) and by speed (the decode speed estimated from what was measured here, or from
 * the software rate on a software adapter: app/adapter.ts).
 */
import { adapterFacts, estimateTokensPerSecond, MIN_USABLE_TOKENS_PER_SECOND, type AdapterFacts } from './adapter';
import { formatBytes, formatCount } from './format';
import { modelPresets, presetFit } from '../worker/protocol';

export type PresetInfo = ReturnType<typeof modelPresets>[number];

export type PresetVerdict =
  | { kind: 'fits'; format: string; tokensPerSecond: number | null }
  | { kind: 'slow'; format: string; tokensPerSecond: number }
  | { kind: 'big'; reason: string }
  | { kind: 'unknown' };

/** Whether preset `p` suits this adapter, by memory and then by speed. */
export function presetVerdict(p: PresetInfo, adapter: AdapterFacts | null): PresetVerdict {
  if (!adapter) return { kind: 'unknown' };
  const f = presetFit(p, adapter);
  if (!f.ok) return { kind: 'big', reason: f.error.message };
  const format = f.report.format;
  const tps = estimateTokensPerSecond(p.sizes[format].weightBytes, adapter);
  if (tps !== null && tps < MIN_USABLE_TOKENS_PER_SECOND) return { kind: 'slow', format, tokensPerSecond: tps };
  return { kind: 'fits', format, tokensPerSecond: tps };
}

export function formatSpeed(tps: number): string {
  return tps >= 10 ? `${tps.toFixed(0)} tok/s` : tps >= 1 ? `${tps.toFixed(1)} tok/s` : `${tps.toFixed(2)} tok/s`;
}

function verdictText(v: PresetVerdict): { text: string; cls: string } {
  switch (v.kind) {
    case 'fits':
      return { text: `fits (${v.format})${v.tokensPerSecond !== null ? ` · ~${formatSpeed(v.tokensPerSecond)}` : ''}`, cls: 'fit-yes' };
    case 'slow':
      return { text: `too slow here (~${formatSpeed(v.tokensPerSecond)})`, cls: 'fit-slow' };
    case 'big':
      return { text: 'too big here', cls: 'fit-no' };
    default:
      return { text: '', cls: '' };
  }
}

/**
 * One button per preset; `onPick` runs when it is pressed. `verb` starts each button's accessible name
 * ("Download" → "Download Qwen3 0.6B, 355 MB, needs 1.33 GB, fits (f16)").
 */
export async function presetButtons(onPick: (p: PresetInfo) => void, verb = ''): Promise<HTMLButtonElement[]> {
  const adapter = await adapterFacts();
  return modelPresets().map((p) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'preset';
    b.dataset.preset = p.id;
    const left = document.createElement('span');
    const name = document.createElement('strong');
    name.textContent = p.label;
    const sub = document.createElement('small');
    const size = `${formatBytes(p.sizes.q4.downloadBytes)} download at q4`;
    const mem = `needs ${formatBytes(p.gpuMemory)} of GPU memory`;
    sub.textContent = ` ${formatCount(p.parameters)} params · ${size} · ${mem}`;
    left.append(name, sub);
    const v = presetVerdict(p, adapter);
    const fit = document.createElement('small');
    const { text, cls } = verdictText(v);
    fit.className = cls;
    fit.textContent = text;
    b.dataset.fit = v.kind;
    if (v.kind === 'big') b.title = v.reason;
    if (v.kind === 'slow') b.title = `On this adapter (${adapter?.name}) a model this size would decode at about ${formatSpeed(v.tokensPerSecond)}.`;
    b.append(left, fit);
    b.setAttribute('aria-label', `${verb ? `${verb} ` : ''}${p.label}, ${size}, ${mem}${text ? `, ${text}` : ''}`);
    b.addEventListener('click', () => onPick(p));
    return b;
  });
}
