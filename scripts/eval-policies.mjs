// KV policy evaluation of the embedded default model (docs/policy-eval.md): for full cache, DMS and the
// training-free window (StreamingLLM), TOVA and H2O at several KV budgets, perplexity on held-out text and
// task accuracy, each against peak resident KV tokens and KV token reads. Everything goes through the CLI
// (`scripts/dms.mjs perplexity|hyperscale --json`), one process per (command, budget).
//
//   node scripts/eval-policies.mjs [--quick] [--budgets 32,64] [--ppl-tokens 256] [--n 12] [--length 112]
//        [--temperature 0] [--text docs/data/heldout.txt] [--tasks docs/data/policy-eval-tasks.jsonl] [--out docs/policy-eval]
//   node scripts/eval-policies.mjs --resume --budgets 16   (adds the runs missing from <out>.json; same sizes)
//   node scripts/eval-policies.mjs --plot-only      (re-draws the SVGs from <out>.json)
//
// Writes <out>.json after every finished run (so a run cut short keeps what it finished) and the plots
// <out>-ppl.svg and <out>-accuracy.svg. Plain SVG, no dependencies.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const argv = process.argv.slice(2);
const flag = (name) => argv.includes(`--${name}`);
const opt = (name, fallback) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : fallback;
};
const quick = flag('quick');
const cfg = {
  model: opt('model', 'default'),
  text: opt('text', 'docs/data/heldout.txt'),
  tasks: opt('tasks', 'docs/data/policy-eval-tasks.jsonl'),
  budgets: opt('budgets', quick ? '32' : '32,64').split(',').map(Number),
  pplTokens: Number(opt('ppl-tokens', quick ? 128 : 256)),
  n: Number(opt('n', quick ? 6 : 9)),
  length: Number(opt('length', quick ? 96 : 112)),
  temperature: Number(opt('temperature', 0)),
  trainingFree: opt('policies', 'tova,h2o,window').split(','),
};
const outPrefix = opt('out', 'docs/policy-eval');
const jsonFile = `${root}${outPrefix}.json`;
const log = (s) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${s}\n`);

function cli(args) {
  const t0 = Date.now();
  const stdout = execFileSync('node', [`${root}scripts/dms.mjs`, ...args], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
  const line = stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  return { result: JSON.parse(line), seconds: (Date.now() - t0) / 1000 };
}

function save(data) {
  writeFileSync(jsonFile, JSON.stringify(data, null, 1) + '\n');
  plotAll(data);
}

async function run() {
  // --resume: keep the runs already in <out>.json (same sizes) and run only the missing ones, e.g. to add a budget.
  const prev = flag('resume') && existsSync(jsonFile) ? JSON.parse(readFileSync(jsonFile, 'utf8')) : null;
  if (prev) for (const k of Object.keys(prev.config)) if (k !== 'budgets') cfg[k] = prev.config[k];
  const data = prev ? { ...prev, command: `${prev.command}; node scripts/eval-policies.mjs ${argv.join(' ')}`, config: { ...prev.config, budgets: [...new Set([...prev.config.budgets, ...cfg.budgets])] } } : {
    generated: new Date().toISOString(),
    command: `node scripts/eval-policies.mjs ${argv.join(' ')}`.trim(),
    config: cfg,
    notes: 'peakTokens and tokenReads are summed over layers and KV heads (per problem means for accuracy). dms runs without a budget cap: its point is the one its learned decisions give. Training-free budgets are tokens kept per layer and KV head.',
    perplexity: [],
    accuracy: [],
  };
  // Perplexity: one process per (policy, budget), every policy scored token by token (--step 1) so that
  // KV reads are counted the same way for all (the CLI counts reads per decode step, not in chunked prefill).
  const pplRuns = [{ policy: 'full' }, { policy: 'dms' }, ...cfg.budgets.flatMap((b) => cfg.trainingFree.map((p) => ({ policy: p, budget: b })))];
  const accRuns = [{ policies: 'full,dms' }, ...cfg.budgets.map((b) => ({ policies: cfg.trainingFree.join(','), budget: b }))];
  // Interleave so that a run cut short still has both metrics for the first budgets.
  const jobs = [{ kind: 'ppl', r: pplRuns[0] }, { kind: 'ppl', r: pplRuns[1] }, { kind: 'acc', r: accRuns[0] }];
  cfg.budgets.forEach((b, i) => {
    for (const r of pplRuns.filter((x) => x.budget === b)) jobs.push({ kind: 'ppl', r });
    jobs.push({ kind: 'acc', r: accRuns[i + 1] });
  });
  const done = (kind, r) => kind === 'ppl'
    ? data.perplexity.some((p) => p.policy === r.policy && p.budget === (r.budget ?? null))
    : data.accuracy.some((p) => r.policies.split(',').includes(p.policy) && p.budget === (r.budget ?? null));
  for (const { kind, r } of jobs) {
    if (done(kind, r)) continue;
    const budgetArgs = r.budget ? ['--kv-budget', String(r.budget)] : [];
    if (kind === 'ppl') {
      log(`perplexity ${r.policy}${r.budget ? ` budget ${r.budget}` : ''} over ${cfg.pplTokens} tokens`);
      const { result, seconds } = cli(['perplexity', '--model', cfg.model, '--file', cfg.text, '--max-tokens', String(cfg.pplTokens), '--kv', r.policy, ...budgetArgs, '--step', '1', '--json']);
      data.perplexity.push({ policy: r.policy, budget: r.budget ?? null, ppl: result.ppl, tokens: result.tokens, peakTokens: result.kv.peakTokens, peakTokensFull: result.kv.peakTokensFull, tokenReads: result.kv.tokenReads, tokenReadsFull: result.kv.tokenReadsFull, seconds });
      log(`  ppl ${result.ppl.toFixed(3)}  peak ${result.kv.peakTokens}  reads ${result.kv.tokenReads}  (${seconds.toFixed(0)} s)`);
    } else {
      log(`accuracy ${r.policies}${r.budget ? ` budget ${r.budget}` : ''} on ${cfg.n} problems, L=${cfg.length}`);
      const { result, seconds } = cli(['hyperscale', '--model', cfg.model, '--tasks', cfg.tasks, '--n', String(cfg.n), '--widths', '1', '--lengths', String(cfg.length), '--temperature', String(cfg.temperature), '--kv', r.policies, ...budgetArgs, '--json']);
      data.adapter ??= result.adapter;
      for (const p of result.points) {
        data.accuracy.push({ policy: p.policy, budget: p.policy === 'full' || p.policy === 'dms' ? null : r.budget, accuracy: p.accuracy, problems: p.problems, answered: p.answered, peakTokens: p.peakTokens, tokenReads: p.tokenReads, chainTokens: p.chainTokens, perTask: p.perTask, seconds: p.seconds });
        log(`  ${p.policy}: acc ${(100 * p.accuracy).toFixed(1)}%  peak ${p.peakTokens.toFixed(0)}  reads ${p.tokenReads.toFixed(0)}`);
      }
      log(`  (${seconds.toFixed(0)} s)`);
    }
    save(data);
  }
  data.finished = new Date().toISOString();
  save(data);
}

// ---- plots -------------------------------------------------------------------------------------------
const COLORS = { full: '#d62728', dms: '#1f77b4', window: '#2ca02c', tova: '#9467bd', h2o: '#8c564b' };
const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;');
const fmt = (v) => (v >= 1e6 ? `${+(v / 1e6).toPrecision(3)}M` : v >= 1e3 ? `${+(v / 1e3).toPrecision(3)}k` : `${+v.toPrecision(3)}`);

/** One panel at (ox, oy): log x; y log (perplexity) or linear 0..1 (accuracy). */
function panel(el, { ox, oy, w, h, points, x, y, yLog, xLabel, yLabel }) {
  const xs = points.map(x).filter((v) => v > 0);
  const lo = Math.floor(Math.log10(Math.min(...xs)) * 4) / 4 - 0.05, hi = Math.ceil(Math.log10(Math.max(...xs)) * 4) / 4 + 0.05;
  const sx = (v) => ox + ((Math.log10(v) - lo) / (hi - lo)) * w;
  let sy, yTicks;
  if (yLog) {
    const ys = points.map(y);
    const ylo = Math.floor(Math.log10(Math.min(...ys)) * 4) / 4 - 0.05, yhi = Math.ceil(Math.log10(Math.max(...ys)) * 4) / 4 + 0.05;
    sy = (v) => oy + (1 - (Math.log10(v) - ylo) / (yhi - ylo)) * h;
    yTicks = [];
    for (let e = Math.floor(ylo); e <= Math.ceil(yhi); e++) for (const k of [1, 1.5, 2, 3, 5, 7]) if (Math.log10(k * 10 ** e) >= ylo && Math.log10(k * 10 ** e) <= yhi) yTicks.push([k * 10 ** e, fmt(k * 10 ** e)]);
  } else {
    sy = (v) => oy + (1 - v) * h;
    yTicks = Array.from({ length: 11 }, (_, i) => [i / 10, `${i * 10}%`]);
  }
  for (const [v, label] of yTicks) {
    el.push(`<line x1="${ox}" x2="${ox + w}" y1="${sy(v).toFixed(1)}" y2="${sy(v).toFixed(1)}" stroke="#eee"/>`);
    el.push(`<text x="${ox - 6}" y="${(sy(v) + 4).toFixed(1)}" font-size="10" text-anchor="end">${label}</text>`);
  }
  for (let e = Math.floor(lo); e <= Math.ceil(hi); e++) {
    for (const k of [1, 2, 5]) {
      const v = k * 10 ** e;
      if (Math.log10(v) < lo || Math.log10(v) > hi) continue;
      el.push(`<line x1="${sx(v).toFixed(1)}" x2="${sx(v).toFixed(1)}" y1="${oy}" y2="${oy + h}" stroke="#eee"/>`);
      el.push(`<text x="${sx(v).toFixed(1)}" y="${oy + h + 14}" font-size="10" text-anchor="middle">${fmt(v)}</text>`);
    }
  }
  el.push(`<rect x="${ox}" y="${oy}" width="${w}" height="${h}" fill="none" stroke="#444"/>`);
  el.push(`<text x="${ox + w / 2}" y="${oy + h + 32}" font-size="11" text-anchor="middle">${esc(xLabel)} (log scale)</text>`);
  el.push(`<text transform="translate(${ox - 44} ${oy + h / 2}) rotate(-90)" font-size="11" text-anchor="middle">${esc(yLabel)}</text>`);
  for (const pol of Object.keys(COLORS)) {
    const pts = points.filter((p) => p.policy === pol).sort((a, b) => x(a) - x(b));
    if (!pts.length) continue;
    const c = COLORS[pol];
    if (pts.length > 1) el.push(`<polyline fill="none" stroke="${c}" stroke-width="1.5" stroke-opacity="0.7" points="${pts.map((p) => `${sx(x(p)).toFixed(1)},${sy(y(p)).toFixed(1)}`).join(' ')}"/>`);
    for (const p of pts) {
      const cx = sx(x(p)), cy = sy(y(p));
      const label = p.budget ? `b${p.budget}` : pol === 'dms' ? 'dms' : 'full';
      el.push(`<circle cx="${cx.toFixed(1)}" cy="${cy.toFixed(1)}" r="4.5" fill="${c}" fill-opacity="0.6" stroke="${c}"><title>${pol}${p.budget ? ` budget ${p.budget}` : ''}: ${yLog ? y(p).toFixed(2) : `${(100 * y(p)).toFixed(1)}%`}</title></circle>`);
      el.push(`<text x="${(cx + 6).toFixed(1)}" y="${(cy - 5).toFixed(1)}" font-size="9" fill="${c}">${label}</text>`);
    }
  }
}

function figure(file, title, points, y, yLog, yLabel, footer) {
  if (!points.length) return;
  const W = 1040, H = 420, pw = 340, ph = 290, top = 50;
  const el = [`<rect x="0" y="0" width="${W}" height="${H}" fill="white"/>`, `<text x="60" y="24" font-size="15" font-weight="bold">${esc(title)}</text>`];
  panel(el, { ox: 70, oy: top, w: pw, h: ph, points, x: (p) => p.peakTokens, y, yLog, xLabel: 'peak KV tokens (Σ layers × KV heads)', yLabel });
  panel(el, { ox: 70 + pw + 90, oy: top, w: pw, h: ph, points, x: (p) => p.tokenReads, y, yLog, xLabel: 'KV token reads (Σ steps × layers × KV heads)', yLabel });
  const lx = 70 + 2 * pw + 110;
  const pols = Object.keys(COLORS).filter((p) => points.some((q) => q.policy === p));
  pols.forEach((pol, i) => {
    const ly = top + 10 + i * 20;
    el.push(`<circle cx="${lx}" cy="${ly}" r="5" fill="${COLORS[pol]}" fill-opacity="0.6" stroke="${COLORS[pol]}"/>`);
    el.push(`<text x="${lx + 10}" y="${ly + 4}" font-size="12">${esc(pol === 'full' ? 'full cache' : pol === 'window' ? 'window (StreamingLLM)' : pol)}</text>`);
  });
  el.push(`<text x="${lx - 6}" y="${top + 20 + pols.length * 20}" font-size="10" fill="#555">bN: budget N tokens</text>`);
  el.push(`<text x="${lx - 6}" y="${top + 34 + pols.length * 20}" font-size="10" fill="#555">per layer and KV head</text>`);
  el.push(`<text x="60" y="${H - 12}" font-size="10" fill="#555">${esc(footer)}</text>`);
  writeFileSync(file, `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">\n${el.join('\n')}\n</svg>\n`);
}

function plotAll(data) {
  const c = data.config;
  figure(`${root}${outPrefix}-ppl.svg`, 'Default model: held-out perplexity vs KV memory and KV reads (lower is better)', data.perplexity, (p) => p.ppl, true, 'perplexity (log scale)', `${c.pplTokens} tokens of ${c.text}; node scripts/eval-policies.mjs`);
  figure(`${root}${outPrefix}-accuracy.svg`, 'Default model: task accuracy vs KV memory and KV reads', data.accuracy, (p) => p.accuracy, false, 'accuracy (greedy, 1 chain)', `${data.accuracy[0]?.problems ?? c.n} problems from ${c.tasks}, up to ${c.length} new tokens, temperature ${c.temperature}; node scripts/eval-policies.mjs`);
}

if (flag('plot-only')) {
  if (!existsSync(jsonFile)) throw new Error(`${jsonFile} not found`);
  plotAll(JSON.parse(readFileSync(jsonFile, 'utf8')));
} else {
  await run();
}
