/**
 * Maps the CLI's --model argument to a ModelSource. A URL or repo id is read with the browser store's
 * network code (worker/store/remote-source.ts): a stall timeout, retries with backoff that are reported on
 * stderr, download progress on stderr, and errors that name the file and what was expected.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { resolveModelUrl, type ModelSource } from '../worker/load/source';
import { FolderSource } from '../worker/load/source-node';
import { formatBytes } from '../worker/store/errors';
import { RemoteSource } from '../worker/store/remote-source';
import { intArg } from './args';

/** The embedded default model, relative to the repo root (the CLI bundle lives in .cache/). */
export const DEFAULT_MODEL_DIR = fileURLToPath(new URL('../public/models/webdms-default/', import.meta.url));

export interface NetOptions {
  /** A request with no response, or a body with no data, for this long is aborted and retried (default 30 s). */
  timeoutMs?: number;
}

/** `--timeout S` (seconds) of a command's flags. */
export function netOptions(values: Map<string, string>): NetOptions {
  const s = intArg(values, 'timeout', 1);
  return s === undefined ? {} : { timeoutMs: s * 1000 };
}

export function modelSource(spec: string, net: NetOptions = {}): ModelSource {
  if (spec === 'default') return new FolderSource(DEFAULT_MODEL_DIR);
  if (/^https?:\/\//.test(spec)) return remoteSource(resolveModelUrl(spec), net);
  if (existsSync(spec)) return new FolderSource(spec);
  if (/^[\w.-]+\/[\w.-]+(@[\w.-]+)?$/.test(spec)) return remoteSource(resolveModelUrl(spec), net);
  throw new Error(`--model "${spec}": no such folder, and not a URL or a Hugging Face repo id`);
}

/** Progress lines at most once a second per file, and when a file is complete; small files say nothing. */
function progressPrinter(): (file: string, loaded: number, total: number) => void {
  const last = new Map<string, number>();
  return (file, loaded, total) => {
    if (total < 1024 * 1024) return;
    const now = Date.now();
    const done = loaded >= total;
    if (!done && now - (last.get(file) ?? 0) < 1000) return;
    last.set(file, now);
    process.stderr.write(`[download ${file}: ${formatBytes(loaded)} of ${formatBytes(total)} (${Math.floor((100 * loaded) / total)}%)]\n`);
  };
}

function remoteSource(base: string, net: NetOptions): RemoteSource {
  const timeout = net.timeoutMs ?? 30_000;
  return new RemoteSource(base, {
    stallTimeoutMs: timeout,
    onRetry: (e, attempt, attempts, delay) => process.stderr.write(`[retrying in ${(delay / 1000).toFixed(1)} s (attempt ${attempt} of ${attempts}): ${e.message}]\n`),
    onProgress: progressPrinter(),
  });
}
