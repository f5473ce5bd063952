/** Human-readable numbers for the UI. */

export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n < 0) return '–';
  if (n < 1024) return `${Math.round(n)} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)} ${units[i]}`;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '–';
  if (seconds < 1) return '<1 s';
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

export function formatCount(n: number): string {
  if (!Number.isFinite(n)) return '–';
  if (n >= 1e9) return `${(n / 1e9).toFixed(n >= 1e10 ? 0 : 1)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(n >= 1e7 ? 0 : 1)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(0)}k`;
  return Math.round(n).toLocaleString('en-US');
}

export function formatRatio(r: number): string {
  if (!Number.isFinite(r) || r <= 0) return '–';
  return `${r >= 10 ? r.toFixed(0) : r.toFixed(1)}×`;
}

export function relativeTime(t: number, now = Date.now()): string {
  const d = (now - t) / 1000;
  if (d < 60) return 'just now';
  if (d < 3600) return `${Math.floor(d / 60)} min ago`;
  if (d < 86400) return `${Math.floor(d / 3600)} h ago`;
  if (d < 7 * 86400) return `${Math.floor(d / 86400)} d ago`;
  return new Date(t).toLocaleDateString();
}

/** The note shown on a reply whose prompt left out the oldest turns (ChatResult.dropped). */
export function droppedText(d: { messages: number; tokens: number }): string {
  return `Earlier turns no longer fit: ${formatCount(d.tokens)} token${d.tokens === 1 ? '' : 's'} dropped (${d.messages} oldest message${d.messages === 1 ? '' : 's'}). The model did not see them for this reply.`;
}

/** A short duration in seconds with one decimal ("0.4 s", "12.3 s"), minutes past a minute. */
export function formatSeconds(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '–';
  return ms < 60_000 ? `${(ms / 1000).toFixed(1)} s` : formatDuration(ms / 1000);
}

/** "1 token", "2 tokens". */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${formatCount(n)} ${n === 1 ? one : many}`;
}

/**
 * A notice about the stored copy, for reading rather than debugging: offline, it says so in words; otherwise
 * addresses are cut to their host ("huggingface.co") instead of a long raw URL.
 */
export function readableNotice(text: string, online = true): string {
  if (!online || /You are offline|You went offline/.test(text)) {
    return 'You are offline, so updates to this model could not be checked. The copy stored in this browser works; updates are checked when you are back online.';
  }
  return text.replace(/https?:\/\/[^\s)"']+/g, (u) => {
    try {
      return new URL(u).host;
    } catch {
      return u;
    }
  });
}
