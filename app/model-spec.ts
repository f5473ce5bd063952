/**
 * Model specs as the user, a link or an embedding page gives them: 'default' (the embedded model), a Hugging
 * Face repo id (`org/name[@rev]`), or a URL or path. Used by the chat page and the widget.
 */

/**
 * What the worker understands: 'default', a repo id, or an absolute URL (the worker lives at another URL,
 * so a path is resolved here, against `base`).
 */
export function specForWorker(spec: string, base = location.href): string {
  const s = spec.trim();
  if (s === '' || s === 'default') return 'default';
  if (/^[\w.-]+\/[\w.-]+(@[\w.-]+)?$/.test(s) && !s.startsWith('.')) return s;
  try {
    return new URL(s, base).href;
  } catch {
    return s;
  }
}

/** A short name for the UI: "Embedded model", `org/name` of a Hugging Face URL, or the URL's last two folders. */
export function specLabel(spec: string): string {
  if (spec === 'default' || spec === '') return 'Embedded model';
  try {
    const u = new URL(spec, location.href);
    const parts = u.pathname.split('/').filter(Boolean);
    const i = parts.indexOf('resolve');
    if (u.hostname.endsWith('huggingface.co') && parts.length >= 2) return `${parts[0]}/${parts[1]}`;
    return parts.slice(i >= 0 ? 0 : -2).join('/') || u.host;
  } catch {
    return spec;
  }
}

/**
 * The name to show for a loaded model: the embedded one by what it is, else the checkpoint's own name
 * when it is a name (not a URL or a path), else the short form of the spec.
 */
export function modelDisplayName(spec: string, infoName?: string): string {
  const s = spec.trim();
  if (s === '' || s === 'default') return 'WebDMS demo model';
  if (!infoName || /^[a-z]+:/i.test(infoName) || infoName.startsWith('/') || infoName.startsWith('.')) return specLabel(s);
  return infoName;
}
