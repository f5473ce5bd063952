/**
 * The benchmark page's module worker (bench.html, app/bench/bench-page.ts): runs ./browser-bench.ts for the
 * URL parameters the page sends, off the main thread as the app runs the engine, and posts its progress
 * and result back. Messages out: {type: 'log', line}, {type: 'row', row}, {type: 'done', result}.
 */
import { runPageBench } from './browser-bench';

export type BenchWorkerMessage =
  | { type: 'log'; line: string }
  | { type: 'row'; row: import('./rows').BenchRow; text: string }
  | { type: 'done'; result: import('./browser-bench').PageBenchResult };

const post = (m: BenchWorkerMessage) => (self as unknown as Worker).postMessage(m);

self.addEventListener('message', (e: MessageEvent<{ search: string }>) => {
  void runPageBench(e.data.search, 'worker', {
    log: (line) => post({ type: 'log', line }),
    row: (row, text) => post({ type: 'row', row, text }),
  }).then((result) => post({ type: 'done', result }));
}, { once: true });
