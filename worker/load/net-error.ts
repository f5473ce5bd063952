/**
 * Why a request got no HTTP response, worded by what the browser can know. A failed `fetch` in a browser is
 * one opaque TypeError ("Failed to fetch") whether the machine is offline, the name did not resolve, the
 * TLS handshake failed, the connection was refused or the server answered without letting this page read
 * the answer (CORS). What can be told apart:
 * - `navigator.onLine === false`: the browser knows it is offline;
 * - a second, `no-cors` request to the same URL that does get an (opaque) answer: the server is reachable,
 *   so the first one failed on CORS;
 * - a `no-cors` request that fails too: the server cannot be reached (DNS, TLS or the connection).
 * Outside a browser (Node: the CLI and tests) there is no CORS, and the error's own reason is given.
 */

export type NetworkFailureKind = 'offline' | 'cors' | 'unreachable' | 'timeout' | 'network';

export interface NetworkFailure {
  kind: NetworkFailureKind;
  /** A sentence for the person using the page, naming the URL. */
  message: string;
  /** Whether trying again may help (not for CORS: the server's headers will not change by themselves). */
  retriable: boolean;
}

const isOffline = (): boolean => (globalThis as { navigator?: { onLine?: boolean } }).navigator?.onLine === false;

export const inBrowser = (): boolean =>
  typeof (globalThis as { document?: unknown }).document !== 'undefined' ||
  typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !== 'undefined';

const hostOf = (url: string): string => {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
};

/**
 * Explains a request to `url` that threw (`reason`: its message) instead of answering. `what` says what
 * was being fetched ("size", "config.json"…); `timedOut` when our own timer aborted it. `probe` is the
 * fetch used for the `no-cors` check (defaults to the global one).
 */
export async function explainNetworkFailure(
  url: string,
  what: string,
  reason: string,
  opts: { timedOut?: boolean; probe?: typeof fetch; probeTimeoutMs?: number } = {},
): Promise<NetworkFailure> {
  const host = hostOf(url);
  if (isOffline()) {
    return {
      kind: 'offline',
      message: `You are offline: cannot download ${url} (${what}). Connect to the internet, or choose a model stored in this browser.`,
      retriable: false,
    };
  }
  if (opts.timedOut) {
    return { kind: 'timeout', message: `${host} did not answer in time for ${url} (${what}): ${reason}.`, retriable: true };
  }
  if (!inBrowser()) {
    return { kind: 'network', message: `Network error downloading ${url} (${what}): ${reason}.`, retriable: true };
  }
  let answered = false;
  try {
    const probe = opts.probe ?? ((...a: Parameters<typeof fetch>) => globalThis.fetch(...a));
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), opts.probeTimeoutMs ?? 10_000);
    try {
      const res = await probe(url, { method: 'HEAD', mode: 'no-cors', cache: 'no-store', credentials: 'omit', signal: ctl.signal });
      // An opaque answer (type 'opaque', status 0) or a readable one: either way the server answered.
      answered = !!res;
    } finally {
      clearTimeout(timer);
    }
  } catch {
    answered = false;
  }
  if (answered) {
    return {
      kind: 'cors',
      message:
        `${host} answered, but does not let this page read ${url} (${what}): it sends no Access-Control-Allow-Origin for this site (CORS). ` +
        'A model host must allow cross-origin reads and expose Content-Length, Content-Range and ETag (Hugging Face does).',
      retriable: false,
    };
  }
  return {
    kind: 'unreachable',
    message: `Cannot reach ${host} for ${url} (${what}): the name could not be resolved, or the connection or its TLS handshake failed. Check the address and your connection.`,
    retriable: true,
  };
}
