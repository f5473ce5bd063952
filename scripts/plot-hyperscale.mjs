// Pareto plots of a `dms hyperscale --out` result: accuracy against peak KV memory and against KV reads,
// one series per KV policy, each point labelled W x L, the Pareto frontier of each policy drawn as a line.
// Plain SVG, no dependencies.
//   node scripts/plot-hyperscale.mjs <sweep.json> <out-prefix>   -> <out-prefix>-memory.svg, <out-prefix>-reads.svg
import { readFileSync, writeFileSync } from 'node:fs';

const [input, prefix] = process.argv.slice(2);
if (!input || !prefix) {
  process.stderr.write('usage: node scripts/plot-hyperscale.mjs <sweep.json> <out-prefix>\n');
  process.exit(2);
}
const sweep = JSON.parse(readFileSync(input, 'utf8'));
const COLORS = { full: '#d62728', dms: '#1f77b4', window: '#2ca02c', tova: '#9467bd', h2o: '#8c564b' };
const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;');

/** Points not beaten by another of the same series (lower or equal x and higher or equal accuracy). */
function frontier(points, x) {
  const sorted = [...points].sort((a, b) => x(a) - x(b) || b.accuracy - a.accuracy);
  const out = [];
  let best = -Infinity;
  for (const p of sorted) {
    if (p.accuracy > best) {
      out.push(p);
      best = p.accuracy;
    }
  }
  return out;
}

function plot({ title, xLabel, x, file }) {
  const Wd = 720, Ht = 440, m = { l: 70, r: 150, t: 48, b: 58 };
  const pw = Wd - m.l - m.r, ph = Ht - m.t - m.b;
  const xs = sweep.points.map(x);
  let lo = Math.log10(Math.min(...xs)), hi = Math.log10(Math.max(...xs));
  lo = Math.floor(lo * 4) / 4 - 0.05;
  hi = Math.ceil(hi * 4) / 4 + 0.05;
  const sx = (v) => m.l + ((Math.log10(v) - lo) / (hi - lo)) * pw;
  const sy = (a) => m.t + (1 - a) * ph;
  const el = [];
  el.push(`<rect x="0" y="0" width="${Wd}" height="${Ht}" fill="white"/>`);
  el.push(`<text x="${m.l}" y="24" font-size="15" font-weight="bold">${esc(title)}</text>`);
  // Grid and ticks: accuracy every 10%, x at 1-2-5 steps.
  for (let a = 0; a <= 1.0001; a += 0.1) {
    el.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${sy(a)}" y2="${sy(a)}" stroke="#eee"/>`);
    el.push(`<text x="${m.l - 8}" y="${sy(a) + 4}" font-size="11" text-anchor="end">${Math.round(a * 100)}%</text>`);
  }
  for (let e = Math.floor(lo); e <= Math.ceil(hi); e++) {
    for (const k of [1, 2, 5]) {
      const v = k * 10 ** e;
      if (Math.log10(v) < lo || Math.log10(v) > hi) continue;
      el.push(`<line x1="${sx(v)}" x2="${sx(v)}" y1="${m.t}" y2="${m.t + ph}" stroke="#eee"/>`);
      const label = v >= 1e6 ? `${v / 1e6}M` : v >= 1e3 ? `${v / 1e3}k` : `${v}`;
      el.push(`<text x="${sx(v)}" y="${m.t + ph + 16}" font-size="11" text-anchor="middle">${label}</text>`);
    }
  }
  el.push(`<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#444"/>`);
  el.push(`<text x="${m.l + pw / 2}" y="${Ht - 14}" font-size="12" text-anchor="middle">${esc(xLabel)} (log scale)</text>`);
  el.push(`<text transform="translate(18 ${m.t + ph / 2}) rotate(-90)" font-size="12" text-anchor="middle">accuracy (majority vote)</text>`);
  const policies = [...new Set(sweep.points.map((p) => p.policy))];
  policies.forEach((pol, i) => {
    const pts = sweep.points.filter((p) => p.policy === pol);
    const c = COLORS[pol] ?? '#333';
    const f = frontier(pts, x);
    el.push(`<polyline fill="none" stroke="${c}" stroke-width="2" stroke-opacity="0.7" points="${f.map((p) => `${sx(x(p)).toFixed(1)},${sy(p.accuracy).toFixed(1)}`).join(' ')}"/>`);
    for (const p of pts) {
      const cx = sx(x(p)), cy = sy(p.accuracy);
      const r = 3 + 1.5 * Math.log2(p.chains);
      el.push(`<circle cx="${cx.toFixed(1)}" cy="${cy.toFixed(1)}" r="${r.toFixed(1)}" fill="${c}" fill-opacity="0.55" stroke="${c}"><title>${pol} W=${p.chains} L=${p.maxTokens}: ${(100 * p.accuracy).toFixed(1)}%</title></circle>`);
      el.push(`<text x="${(cx + r + 2).toFixed(1)}" y="${(cy + (pol === 'dms' ? -4 : 12)).toFixed(1)}" font-size="9" fill="${c}">${p.chains}x${p.maxTokens}</text>`);
    }
    const ly = m.t + 10 + i * 20;
    el.push(`<circle cx="${m.l + pw + 20}" cy="${ly}" r="5" fill="${c}" fill-opacity="0.55" stroke="${c}"/>`);
    el.push(`<text x="${m.l + pw + 30}" y="${ly + 4}" font-size="12">${esc(pol === 'full' ? 'full (vanilla)' : pol)}</text>`);
  });
  const ny = m.t + 10 + policies.length * 20 + 10;
  el.push(`<text x="${m.l + pw + 14}" y="${ny}" font-size="10" fill="#555">labels: W chains x L tokens</text>`);
  el.push(`<text x="${m.l + pw + 14}" y="${ny + 14}" font-size="10" fill="#555">dot size grows with W</text>`);
  el.push(`<text x="${m.l + pw + 14}" y="${ny + 28}" font-size="10" fill="#555">line: Pareto frontier</text>`);
  el.push(`<text x="${m.l + pw + 14}" y="${ny + 48}" font-size="10" fill="#555">${esc(String(sweep.points[0].problems))} problems</text>`);
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${Wd}" height="${Ht}" viewBox="0 0 ${Wd} ${Ht}" font-family="sans-serif">\n${el.join('\n')}\n</svg>\n`;
  writeFileSync(file, svg);
  process.stdout.write(`wrote ${file}\n`);
}

const bytesPerToken = sweep.headDim * 8; // f32 K and V of one token in one (layer, KV head) stream
plot({
  title: `Accuracy vs peak KV memory — ${sweep.model}`,
  xLabel: `peak KV memory per problem, MB (resident tokens x ${bytesPerToken} B)`,
  x: (p) => p.peakBytes / 2 ** 20,
  file: `${prefix}-memory.svg`,
});
plot({
  title: `Accuracy vs KV reads — ${sweep.model}`,
  xLabel: 'KV token reads per problem (decode; summed over layers and KV heads)',
  x: (p) => p.tokenReads,
  file: `${prefix}-reads.svg`,
});
