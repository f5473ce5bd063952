/**
 * The one path from model text to DOM: <think> blocks split out, Markdown rendered by markdown-it, the
 * HTML sanitized by DOMPurify. Model output is untrusted: it may contain HTML, and nothing in it may run,
 * load anything (no scripts, event handlers, styles, forms, iframes, images or other remote media) or
 * look like the app itself (no classes but code languages, no roles or ARIA attributes, no ids).
 * markdown-it parses in linear time, so a hostile reply (thousands of unmatched `*` or `[a](`) cannot
 * stall the page; marked took seconds to minutes on 8-28 KB of those.
 * The chat log renders every message, streamed or restored, through {@link renderMessage}.
 */
import MarkdownIt from 'markdown-it';
import createDOMPurify, { type Config } from 'dompurify';

const markdown = new MarkdownIt({ html: true, breaks: true, linkify: true });

const purify = createDOMPurify(window);
const SANITIZE: Config = {
  USE_PROFILES: { html: true },
  // Media and embeds load remote content (a tracking pixel is an <img>); forms and styles can spoof the UI.
  FORBID_TAGS: ['img', 'picture', 'source', 'video', 'audio', 'track', 'svg', 'math', 'iframe', 'object', 'embed', 'form', 'input', 'button', 'textarea', 'select', 'option', 'style', 'link', 'meta', 'base', 'dialog', 'template'],
  // Roles and ARIA would let a reply pass for an app alert or a user message to assistive technology.
  FORBID_ATTR: ['style', 'srcset', 'ping', 'formaction', 'action', 'background', 'poster', 'role'],
  ALLOW_ARIA_ATTR: false,
  ALLOW_DATA_ATTR: false,
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|#)/i,
  RETURN_TRUSTED_TYPE: false,
};

/**
 * The only classes model output may carry: a code block's language (markdown-it's `language-*`) and
 * the think block this module wraps around reasoning. Any other class could borrow the app's styles
 * (a red error banner, a primary button, a user bubble).
 */
const CLASSES: Record<string, RegExp> = {
  CODE: /^language-[\w#+.-]{1,40}$/,
  DETAILS: /^(think|thinking)$/,
  DIV: /^think-body$/,
};

purify.addHook('afterSanitizeAttributes', (node) => {
  if (!(node instanceof Element)) return;
  if (node.tagName === 'A') {
    const href = node.getAttribute('href');
    if (href && !href.startsWith('#')) {
      node.setAttribute('target', '_blank');
      node.setAttribute('rel', 'noopener noreferrer nofollow');
    }
  }
  // Ids and names could clobber page globals or shadow the app's own elements.
  node.removeAttribute('id');
  node.removeAttribute('name');
  if (node.hasAttribute('class')) {
    const allowed = CLASSES[node.tagName];
    const kept = allowed ? [...node.classList].filter((c) => allowed.test(c)) : [];
    if (kept.length) node.setAttribute('class', kept.join(' '));
    else node.removeAttribute('class');
  }
});

/** Sanitized HTML of untrusted HTML. */
export function sanitize(html: string): string {
  return purify.sanitize(html, SANITIZE) as unknown as string;
}

/** Sanitized HTML of untrusted Markdown (which may contain raw HTML). */
export function renderMarkdown(text: string): string {
  return sanitize(markdown.render(text));
}

export interface Segment {
  kind: 'text' | 'think';
  text: string;
  /** For think segments: the closing </think> has arrived. */
  closed?: boolean;
}

/** Splits a reply into text and <think>…</think> parts; an unclosed <think> runs to the end (still streaming). */
export function splitThink(text: string): Segment[] {
  const out: Segment[] = [];
  let i = 0;
  const open = '<think>';
  const close = '</think>';
  // Some chat templates put <think> in the prompt, so the reply starts inside it: a leading </think> closes it.
  const firstClose = text.indexOf(close);
  const firstOpen = text.indexOf(open);
  if (firstClose >= 0 && (firstOpen < 0 || firstClose < firstOpen)) {
    out.push({ kind: 'think', text: text.slice(0, firstClose), closed: true });
    i = firstClose + close.length;
  }
  while (i < text.length) {
    const s = text.indexOf(open, i);
    if (s < 0) {
      out.push({ kind: 'text', text: text.slice(i) });
      break;
    }
    if (s > i) out.push({ kind: 'text', text: text.slice(i, s) });
    const e = text.indexOf(close, s + open.length);
    if (e < 0) {
      out.push({ kind: 'think', text: text.slice(s + open.length), closed: false });
      break;
    }
    out.push({ kind: 'think', text: text.slice(s + open.length, e), closed: true });
    i = e + close.length;
  }
  return out.filter((seg) => seg.kind === 'think' || seg.text.trim() !== '');
}

const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/**
 * The sanitized HTML of one chat message. Think blocks become collapsed <details>; the whole result
 * goes through the sanitizer once more, so no path skips it.
 */
export function renderMessageHtml(text: string, opts: { streaming?: boolean } = {}): string {
  const parts = splitThink(text).map((seg) => {
    if (seg.kind === 'text') return renderMarkdown(seg.text);
    const words = seg.text.trim() ? seg.text.trim().split(/\s+/).length : 0;
    const label = seg.closed ? `Thought · ${words} word${words === 1 ? '' : 's'}` : opts.streaming ? 'Thinking…' : 'Thought (unfinished)';
    return `<details class="think${seg.closed ? '' : ' thinking'}"><summary>${escapeHtml(label)}</summary><div class="think-body">${renderMarkdown(seg.text)}</div></details>`;
  });
  return sanitize(parts.join(''));
}

/**
 * Renders `text` into `el`, keeping which think blocks the reader opened. Used for every message in
 * the chat log: streamed deltas, finished replies and conversations restored from storage.
 */
export function renderMessage(el: HTMLElement, text: string, opts: { streaming?: boolean } = {}): void {
  const openState = Array.from(el.querySelectorAll(':scope > details.think'), (d) => (d as HTMLDetailsElement).open);
  el.innerHTML = renderMessageHtml(text, opts);
  el.querySelectorAll(':scope > details.think').forEach((d, i) => {
    if (openState[i]) (d as HTMLDetailsElement).open = true;
  });
  for (const pre of el.querySelectorAll('pre')) addCopyButton(pre);
}

function addCopyButton(pre: HTMLPreElement): void {
  const btn = document.createElement('button');
  btn.type = 'button';
  btn.className = 'copy-code';
  btn.textContent = 'Copy';
  btn.setAttribute('aria-label', 'Copy code');
  btn.addEventListener('click', () => {
    const code = pre.querySelector('code')?.textContent ?? pre.textContent ?? '';
    navigator.clipboard?.writeText(code).then(
      () => {
        btn.textContent = 'Copied';
        setTimeout(() => (btn.textContent = 'Copy'), 1200);
      },
      () => undefined,
    );
  });
  pre.append(btn);
}
