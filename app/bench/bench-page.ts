/**
 * bench.html: the rows of `dms bench --shape` measured in this browser (docs/benchmarks.md, "In a browser").
 * By default in a module worker (worker/bench/bench-worker.ts), as the app runs the engine; `worker=0` runs
 * on this page's main thread. Shows the progress and the rows, and puts the JSON in #result; then sets
 * body[data-done="1"] and data-status ok/error. `report=1` also POSTs each log line to /log as {line} and the
 * result to /result (the protocol of ../shared/gpu/browser/web/drive.py, which serves the page there).
 */
import type { BenchWorkerMessage } from '../../worker/bench/bench-worker';
import type { BenchProgress, PageBenchResult } from '../../worker/bench/browser-bench';

const $ = (id: string): HTMLElement => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from bench.html`);
  return el;
};

const q = new URLSearchParams(location.search);
const inWorker = q.get('worker') !== '0';
const report = q.get('report') === '1';
const t0 = performance.now();

function post(path: string, body: unknown): Promise<void> {
  return fetch(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    .then(() => undefined, () => undefined);
}

const logEl = $('log');
function log(line: string): void {
  logEl.textContent += `[${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${line}\n`;
  console.log(line);
  if (report) void post('/log', { line });
}

const rowsEl = $('rows');
const progress: BenchProgress = {
  log,
  row: (_row, text) => {
    rowsEl.textContent += `${text}\n`;
  },
};

/** Runs the benchmark in a module worker; a worker that fails to load or throws ends the run with an error. */
function runInWorker(): Promise<PageBenchResult> {
  return new Promise((resolve) => {
    const w = new Worker(new URL('../../worker/bench/bench-worker.ts', import.meta.url), { type: 'module', name: 'webdms-bench' });
    const fail = (error: string) => {
      w.terminate();
      resolve({
        adapter: null, adapterInfo: null, features: [], limits: {}, runner: 'worker', userAgent: navigator.userAgent,
        crossOriginIsolated, params: Object.fromEntries(q), ms: performance.now() - t0, error,
      });
    };
    w.addEventListener('message', (e: MessageEvent<BenchWorkerMessage>) => {
      const m = e.data;
      if (m.type === 'log') log(m.line);
      else if (m.type === 'row') progress.row!(m.row, m.text);
      else if (m.type === 'done') {
        w.terminate();
        resolve(m.result);
      }
    });
    w.addEventListener('error', (e) => {
      e.preventDefault();
      fail(`the benchmark worker failed${e.message ? `: ${e.message}` : ' to start (its script could not be loaded or threw while starting)'}`);
    });
    w.addEventListener('messageerror', () => fail('the benchmark worker sent a message that could not be read'));
    w.postMessage({ search: location.search });
  });
}

async function runOnPage(): Promise<PageBenchResult> {
  const { runPageBench } = await import('../../worker/bench/browser-bench');
  return runPageBench(location.search, 'page', progress);
}

async function main(): Promise<void> {
  $('params').textContent = `${location.search || '(defaults)'} · ${inWorker ? 'in a module worker' : "on the page's main thread"}`;
  $('status').textContent = 'running…';
  log(`WebDMS bench ${inWorker ? 'in a module worker' : "on the page's main thread"}: ${navigator.userAgent}`);
  let result: PageBenchResult;
  try {
    result = await (inWorker ? runInWorker() : runOnPage());
  } catch (e) {
    result = {
      adapter: null, adapterInfo: null, features: [], limits: {}, runner: inWorker ? 'worker' : 'page', userAgent: navigator.userAgent,
      crossOriginIsolated, params: Object.fromEntries(q), ms: performance.now() - t0, error: e instanceof Error ? e.message : String(e),
    };
  }
  const json = JSON.stringify(result, null, 1);
  $('result').textContent = json;
  $('status').textContent = result.error ? `error: ${result.error}` : `done in ${(result.ms / 1000).toFixed(1)} s`;
  console.log(`RESULT ${JSON.stringify(result)}`);
  if (report) await post('/result', result);
  document.body.dataset.status = result.error ? 'error' : 'ok';
  document.body.dataset.done = '1';
}

void main();
