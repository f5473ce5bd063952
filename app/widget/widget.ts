/**
 * <webdms-chat>: the embeddable chat. One module script, `widget.js` at the root of the build output:
 *
 *   <script type="module" src="https://example.org/webdms/widget.js"></script>
 *   <webdms-chat title="Ask me" model="default" theme="auto"></webdms-chat>
 *
 * Attributes: model ('default' = the embedded model next to widget.js, a Hugging Face repo id, or a URL),
 * title, theme (light | dark | auto), open (present = the panel is open), max-tokens (reply length, default 512). Everything lives in a shadow
 * root. The worker and the default model are resolved relative to this script's own URL; when the
 * script comes from another origin, the worker is started from a same-origin blob: module that
 * imports it (the script's server must send CORS headers). The model loads on first open.
 */
import css from './widget.css?inline';
import workerUrl from '../../worker/worker.ts?worker&url';
import { EngineClient, TabLock } from '../engine-client';
import { renderMessage } from '../render';
import { streamPainter } from '../stream-paint';
import { droppedText, formatBytes, formatDuration } from '../format';
import { modelDisplayName, specForWorker } from '../model-spec';
import type { ChatMessage, LoadProgress, ModelInfo } from '../../worker/protocol';

const NO_WEBGPU = 'This chat needs WebGPU: Chrome or Edge 113+, Safari 26+, or Firefox 141+ on Windows.';

function startWorker(): Worker {
  const url = new URL(workerUrl, import.meta.url);
  if (url.origin === location.origin) return new Worker(url, { type: 'module', name: 'webdms-model' });
  const shim = new Blob([`import ${JSON.stringify(url.href)};`], { type: 'text/javascript' });
  return new Worker(URL.createObjectURL(shim), { type: 'module', name: 'webdms-model' });
}

/** The model attribute → what the worker understands (a path is relative to the embedding page). */
const resolveSpec = (spec: string | null): string => specForWorker(spec ?? '', document.baseURI);

const TEMPLATE = `
<button class="launcher" part="launcher" type="button" aria-expanded="false" aria-label="Open chat">
  <svg viewBox="0 0 24 24" aria-hidden="true"><path d="M21 12a8 8 0 0 1-11.6 7.1L4 20l1-4.6A8 8 0 1 1 21 12z"/></svg>
</button>
<section class="panel" part="panel" role="dialog" hidden>
  <header>
    <span class="dot" data-state="idle"></span>
    <div class="head"><strong class="title"></strong><span class="sub">Runs on your device</span></div>
    <button class="close" type="button" aria-label="Close chat">×</button>
  </header>
  <div class="progress" hidden><div class="bar"><div class="fill"></div></div><span class="ptext"></span></div>
  <div class="error" role="alert" hidden></div>
  <div class="log" role="log" aria-label="Conversation" aria-live="polite"></div>
  <form class="composer">
    <textarea rows="1" aria-label="Message" placeholder="Ask something…"></textarea>
    <button class="send" type="submit" disabled>Send</button>
    <button class="stop" type="button" hidden>Stop</button>
  </form>
</section>`;

export class WebDmsChat extends HTMLElement {
  static observedAttributes = ['model', 'title', 'theme', 'open'];

  private readonly root: ShadowRoot;
  private client: EngineClient | null = null;
  private readonly lock = new TabLock();
  private info: ModelInfo | null = null;
  private loadedSpec: string | null = null;
  private loading: Promise<void> | null = null;
  private messages: ChatMessage[] = [];
  private running: { stopped: boolean; done: Promise<void> } | null = null;
  /** The GPU device was lost: the model is gone and loads again on the next send. */
  private lost = false;

  constructor() {
    super();
    this.root = this.attachShadow({ mode: 'open' });
    const style = document.createElement('style');
    style.textContent = css;
    const wrap = document.createElement('div');
    wrap.className = 'wrap';
    wrap.innerHTML = TEMPLATE;
    this.root.append(style, wrap);
    this.$('.launcher').addEventListener('click', () => this.toggleAttribute('open', !this.hasAttribute('open')));
    this.$('.close').addEventListener('click', () => this.removeAttribute('open'));
    const form = this.$<HTMLFormElement>('.composer');
    const input = this.$<HTMLTextAreaElement>('textarea');
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      void this.send();
    });
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        if (!this.$<HTMLButtonElement>('.send').disabled) form.requestSubmit();
      }
    });
    input.addEventListener('input', () => {
      input.style.height = 'auto';
      input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
      this.sync();
    });
    this.$('.stop').addEventListener('click', () => this.stop());
    this.lock.onLost = () => {
      this.client?.terminate();
      this.client = null;
      this.info = null;
      this.loadedSpec = null;
      this.setState('error');
      this.showError('The model moved to another tab of this site. Close and reopen this chat to load it here again.');
    };
  }

  private $<T extends HTMLElement = HTMLElement>(sel: string): T {
    return this.root.querySelector(sel) as T;
  }

  connectedCallback(): void {
    this.applyTitle();
    this.applyOpen();
  }

  disconnectedCallback(): void {
    this.client?.terminate();
    this.client = null;
    this.lock.releaseLock();
    this.loadedSpec = null;
    this.info = null;
  }

  attributeChangedCallback(name: string, oldValue: string | null, value: string | null): void {
    if (oldValue === value) return;
    if (name === 'title') this.applyTitle();
    if (name === 'open') this.applyOpen();
    if (name === 'model' && this.loadedSpec !== null && resolveSpec(value) !== this.loadedSpec) {
      this.messages = [];
      this.$('.log').replaceChildren();
      if (this.hasAttribute('open')) void this.ensureModel();
    }
  }

  private applyTitle(): void {
    const t = this.getAttribute('title') || 'Chat';
    this.$('.title').textContent = t;
    this.$('.panel').setAttribute('aria-label', t);
  }

  private applyOpen(): void {
    const open = this.hasAttribute('open');
    this.$('.panel').hidden = !open;
    const launcher = this.$('.launcher');
    launcher.setAttribute('aria-expanded', String(open));
    launcher.setAttribute('aria-label', open ? 'Close chat' : 'Open chat');
    if (open) {
      void this.ensureModel();
      requestAnimationFrame(() => this.$<HTMLTextAreaElement>('textarea').focus());
    }
  }

  private setState(s: 'idle' | 'loading' | 'ready' | 'error'): void {
    this.$('.dot').dataset.state = s;
    this.sync();
  }

  private showError(msg: string | null): void {
    const e = this.$('.error');
    e.hidden = !msg;
    e.textContent = msg ?? '';
  }

  private sync(): void {
    const busy = this.running !== null && !this.running.stopped;
    const send = this.$<HTMLButtonElement>('.send');
    send.hidden = busy;
    this.$('.stop').hidden = !busy;
    send.disabled = !this.info || this.$<HTMLTextAreaElement>('textarea').value.trim() === '';
  }

  private ensureModel(): Promise<void> {
    const spec = resolveSpec(this.getAttribute('model'));
    if (this.loadedSpec === spec && (this.info || this.loading)) return this.loading ?? Promise.resolve();
    this.loadedSpec = spec;
    this.loading = this.load(spec).finally(() => (this.loading = null));
    return this.loading;
  }

  private async load(spec: string): Promise<void> {
    this.showError(null);
    this.info = null;
    if (!('gpu' in navigator) || !navigator.gpu) {
      this.setState('error');
      this.showError(NO_WEBGPU);
      return;
    }
    this.setState('loading');
    if (!(await this.lock.tryAcquire())) {
      this.setState('error');
      this.showError('The model is already loaded in another tab of this site. Close that tab, then reopen this chat.');
      this.loadedSpec = null;
      return;
    }
    this.client ??= new EngineClient(startWorker);
    const progress = this.$('.progress');
    progress.hidden = false;
    const t0 = performance.now();
    try {
      const info = await this.client.load({ model: spec }, (p: LoadProgress) => this.progress(p, t0), (message) => {
        if (this.info !== info) return;
        // The model went with the GPU device: the next message loads it again.
        this.lost = true;
        this.setState('error');
        this.showError(`${message}. The model loads again with your next message.`);
      });
      if (this.loadedSpec !== spec) return;
      this.info = info;
      const name = modelDisplayName(spec, info.name);
      this.$('.sub').textContent = `${name} · runs on your device`;
      this.setState('ready');
    } catch (e) {
      if (this.loadedSpec !== spec) return;
      this.setState('error');
      this.showError((e as Error)?.message ?? String(e));
      this.lock.releaseLock();
      this.loadedSpec = null;
    } finally {
      progress.hidden = true;
    }
  }

  private progress(p: LoadProgress, t0: number): void {
    const pct = p.totalBytes > 0 ? (100 * p.loadedBytes) / p.totalBytes : 0;
    this.$('.fill').style.width = `${pct.toFixed(1)}%`;
    const secs = (performance.now() - t0) / 1000;
    const bps = p.bytesPerSecond ?? (secs > 0 ? p.loadedBytes / secs : 0);
    const left = bps > 0 && p.totalBytes > p.loadedBytes ? ` · ${formatDuration((p.totalBytes - p.loadedBytes) / bps)} left` : '';
    this.$('.ptext').textContent = p.phase === 'compile' ? 'Preparing the GPU…' : `Loading model ${formatBytes(p.loadedBytes)} / ${formatBytes(p.totalBytes)}${bps > 0 ? ` · ${formatBytes(bps)}/s` : ''}${left}`;
  }

  private bubble(role: 'user' | 'assistant'): HTMLElement {
    const el = document.createElement('div');
    el.className = `msg ${role}`;
    const c = document.createElement('div');
    c.className = 'content';
    el.append(c);
    this.$('.log').append(el);
    return c;
  }

  private async send(): Promise<void> {
    const input = this.$<HTMLTextAreaElement>('textarea');
    if (this.lost && input.value.trim()) {
      this.lost = false;
      this.loadedSpec = null;
      await this.ensureModel();
    }
    const text = input.value.trim();
    if (!text || !this.info || !this.client) return;
    if (this.running) await this.running.done;
    input.value = '';
    input.style.height = 'auto';
    this.bubble('user').textContent = text;
    this.messages.push({ role: 'user', content: text });
    const out = this.bubble('assistant');
    out.parentElement!.classList.add('streaming');
    const log = this.$('.log');
    let content = '';
    const run = { stopped: false, done: Promise.resolve() };
    const painter = streamPainter(() => {
      if (!run.stopped) renderMessage(out, content, { streaming: true });
      log.scrollTop = log.scrollHeight;
    });
    run.done = (async () => {
      try {
        const maxTokens = Number(this.getAttribute('max-tokens')) || 512;
        const res = await this.client!.chat({ messages: this.messages.slice(), maxTokens }, (d) => {
          if (run.stopped) return;
          content += d.content;
          painter.schedule();
        });
        content = res.content;
        if (content) this.messages.push({ role: 'assistant', content });
        if (res.dropped) {
          const note = document.createElement('div');
          note.className = 'notice';
          note.textContent = droppedText(res.dropped);
          out.parentElement!.before(note);
        }
      } catch (e) {
        this.showError((e as Error)?.message ?? String(e));
      } finally {
        painter.cancel();
        renderMessage(out, content, { streaming: false });
        out.parentElement!.classList.remove('streaming');
        if (!content) out.parentElement!.remove();
        if (this.running === run) this.running = null;
        this.sync();
      }
    })();
    this.running = run;
    this.sync();
    await run.done;
  }

  private stop(): void {
    if (!this.running || this.running.stopped) return;
    this.running.stopped = true;
    this.client?.abort();
    this.sync();
  }
}

if (!customElements.get('webdms-chat')) customElements.define('webdms-chat', WebDmsChat);
