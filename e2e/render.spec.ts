/**
 * Model output is untrusted. These tests run app/render.ts in the page with hostile replies, and check
 * that the chat log paints stored replies through that same function, so nothing in a reply runs.
 * They do not need a model: the page is opened at a model address that does not exist.
 */
import { test, expect, type Page } from '@playwright/test';
import { agreeToModel, openWithModel } from './helpers';

const NO_MODEL = '/?model=http://127.0.0.1:9/none/';

const PAYLOADS = [
  '<img src=x onerror="window.__pwned = (window.__pwned || 0) + 1">',
  'Before <img src="x" onerror="window.__pwned=1"> after',
  '<script>window.__pwned = 2</script>',
  '<svg><script>window.__pwned = 3</script></svg><svg onload="window.__pwned=3"></svg>',
  '<iframe srcdoc="<script>parent.__pwned=4</script>"></iframe>',
  '<details open ontoggle="window.__pwned=5">x</details>',
  '<a href="javascript:window.__pwned=6" id="evil-link">click me</a>',
  '[click me too](javascript:window.__pwned=7)',
  '<math><mtext><table><mglyph><style><img src=x onerror="window.__pwned=8">',
  '<form action="javascript:window.__pwned=9"><button id="evil-button">go</button></form>',
  '<div style="position:fixed;inset:0" onmouseover="window.__pwned=10">cover</div>',
  '![pixel](http://127.0.0.1:9/tracker.png)',
  '<think><img src=x onerror="window.__pwned=11"></think>visible',
  '<input autofocus onfocus="window.__pwned=12">',
  '<p id="log">clobber</p><a name="__webdms">x</a>',
];

/** Opens the page; returns the list of URLs it requests from then on. */
async function openPage(page: Page): Promise<string[]> {
  const requests: string[] = [];
  page.on('request', (r) => requests.push(r.url()));
  // Vite's dev error overlay (for a module that fails to build) would cover the page.
  await page.addInitScript(() => {
    addEventListener('DOMContentLoaded', () => {
      const s = document.createElement('style');
      s.textContent = 'vite-error-overlay { display: none !important; }';
      document.head.append(s);
    });
  });
  await openWithModel(page, NO_MODEL);
  await expect(page.getByRole('log')).toBeVisible();
  return requests;
}

test('the renderer neutralises HTML in model output and runs nothing', async ({ page }) => {
  const requests = await openPage(page);
  const result = await page.evaluate(async (payloads) => {
    const r = (await import('/app/render.ts' as string)) as typeof import('../app/render');
    const host = document.createElement('div');
    document.body.append(host);
    const html: string[] = [];
    for (const p of payloads) {
      const el = document.createElement('div');
      host.append(el);
      r.renderMessage(el, p, { streaming: false });
      html.push(el.innerHTML);
      // Interact the way a reader would.
      el.querySelectorAll('a').forEach((a) => a.click());
      el.querySelectorAll('details').forEach((d) => ((d as HTMLDetailsElement).open = true));
      el.dispatchEvent(new MouseEvent('mouseover', { bubbles: true }));
    }
    await new Promise((res) => setTimeout(res, 800));
    return {
      pwned: (window as unknown as { __pwned?: number }).__pwned ?? null,
      html: html.join('\n'),
      handlers: host.querySelectorAll('[onerror],[onload],[ontoggle],[onmouseover],[onfocus]').length,
      dangerous: host.querySelectorAll('img,script,svg,iframe,form,input,button:not(.copy-code),style,math').length,
      jsLinks: [...host.querySelectorAll('a')].filter((a) => /^\s*javascript:/i.test(a.getAttribute('href') ?? '')).length,
      styled: host.querySelectorAll('[style]').length,
      ids: host.querySelectorAll('[id],[name]').length,
      webdmsIntact: typeof (window as unknown as { __webdms?: { state?: unknown } }).__webdms?.state === 'object',
      logIntact: document.getElementById('log')?.getAttribute('role') === 'log',
    };
  }, PAYLOADS);
  expect(result.pwned).toBeNull();
  expect(result.handlers).toBe(0);
  expect(result.dangerous).toBe(0);
  expect(result.jsLinks).toBe(0);
  expect(result.styled).toBe(0);
  expect(result.ids).toBe(0);
  expect(result.webdmsIntact).toBe(true);
  expect(result.logIntact).toBe(true);
  // Text around the stripped markup survives.
  expect(result.html).toContain('Before');
  expect(result.html).toContain('after');
  expect(result.html).toContain('visible');
  // No remote image was fetched.
  expect(requests.filter((u) => u.includes('tracker.png') || u.endsWith('/x'))).toEqual([]);
});

test('markdown renders, think blocks are collapsed, unfinished ones say so', async ({ page }) => {
  await openPage(page);
  const out = await page.evaluate(async () => {
    const r = (await import('/app/render.ts' as string)) as typeof import('../app/render');
    const el = document.createElement('div');
    document.body.append(el);
    r.renderMessage(el, '<think>\nLet me add.\n</think>\n\n**Four**, see `2+2`:\n\n```js\nconsole.log(4)\n```\n\n- a\n- b', { streaming: false });
    const done = {
      details: el.querySelectorAll('details.think').length,
      open: (el.querySelector('details.think') as HTMLDetailsElement | null)?.open ?? null,
      summary: el.querySelector('details.think summary')?.textContent ?? '',
      strong: el.querySelector('strong')?.textContent ?? '',
      code: el.querySelector('pre code')?.textContent ?? '',
      items: el.querySelectorAll('li').length,
      outsideThink: el.querySelector(':scope > p')?.textContent ?? '',
    };
    // The reader opens the think block; a streaming re-render keeps it open.
    (el.querySelector('details.think') as HTMLDetailsElement).open = true;
    r.renderMessage(el, '<think>\nLet me add.\n</think>\n\n**Four** and more', { streaming: true });
    const keptOpen = (el.querySelector('details.think') as HTMLDetailsElement).open;
    const s = document.createElement('div');
    r.renderMessage(s, '<think>\nstill going', { streaming: true });
    return { done, keptOpen, streamingSummary: s.querySelector('summary')?.textContent ?? '', streamingOpen: (s.querySelector('details') as HTMLDetailsElement).open };
  });
  expect(out.done.details).toBe(1);
  expect(out.done.open).toBe(false);
  expect(out.done.summary).toMatch(/^Thought/);
  expect(out.done.strong).toBe('Four');
  expect(out.done.code.trim()).toBe('console.log(4)');
  expect(out.done.items).toBe(2);
  expect(out.done.outsideThink).not.toContain('Let me add');
  expect(out.keptOpen).toBe(true);
  expect(out.streamingSummary).toBe('Thinking…');
  expect(out.streamingOpen).toBe(false);
});

test('the chat log paints stored replies through the same renderer, and nothing runs', async ({ page }) => {
  await openPage(page);
  const evil = 'Here you go: <img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script> **bold** <a href="javascript:window.__pwned=3">link</a>';
  const id = await page.evaluate(async (content) => {
    const store = (await import('/app/store.ts' as string)) as typeof import('../app/store');
    const now = Date.now();
    const conv = { id: store.newId(), title: 'Hostile reply', createdAt: now, updatedAt: now, messages: [
      { role: 'user' as const, content: 'show me <img src=x onerror="window.__pwned=9">', at: now },
      { role: 'assistant' as const, content, at: now, finishReason: 'stop' as const },
    ] };
    await store.saveConversation(conv);
    return conv.id;
  }, evil);
  await page.reload();
  await agreeToModel(page);
  await page.getByRole('navigation', { name: 'Saved conversations' }).getByRole('button', { name: /^Hostile reply/ }).click();
  const log = page.getByRole('log');
  const bubble = log.locator('.msg-assistant .content');
  await expect(bubble.locator('strong')).toHaveText('bold');
  await bubble.locator('a').click();
  // The user's own text is shown as text, never parsed.
  await expect(log.locator('.msg-user .content')).toHaveText('show me <img src=x onerror="window.__pwned=9">');
  await page.waitForTimeout(500);
  const check = await page.evaluate(async (content) => {
    const r = (await import('/app/render.ts' as string)) as typeof import('../app/render');
    const bubbleEl = document.querySelector('#log .msg-assistant .content') as HTMLElement;
    return {
      pwned: (window as unknown as { __pwned?: number }).__pwned ?? null,
      sameAsRenderer: bubbleEl.innerHTML === r.renderMessageHtml(content, { streaming: false }),
      imgs: document.querySelectorAll('#log img, #log script').length,
    };
  }, evil);
  expect(check.pwned).toBeNull();
  expect(check.imgs).toBe(0);
  expect(check.sameAsRenderer).toBe(true);
  expect(id).toBeTruthy();
});

test('a reply cannot dress up as the app: no classes but code languages, no roles, no ARIA', async ({ page }) => {
  await openPage(page);
  const out = await page.evaluate(async () => {
    const r = (await import('/app/render.ts' as string)) as typeof import('../app/render');
    const el = document.createElement('div');
    document.body.append(el);
    r.renderMessage(el, [
      '<div class="banner banner-error" role="alert" aria-live="assertive"><strong>The model could not be loaded</strong><p class="btn btn-primary">Retry</p></div>',
      '<article class="msg msg-user" aria-label="You said"><div class="content">please send me your password</div></article>',
      '<span role="button" tabindex="0" aria-hidden="true" class="send">Send</span>',
      '```js evil-class\nlet x = 1\n```',
      '<code class="language-py btn-primary">y</code>',
    ].join('\n\n'), { streaming: false });
    return {
      classes: [...el.querySelectorAll('[class]')].filter((e) => !e.classList.contains('copy-code')).map((e) => `${e.tagName}.${e.className}`),
      roles: el.querySelectorAll('[role]').length,
      aria: [...el.querySelectorAll('*')].filter((e) => !e.classList.contains('copy-code') && [...e.attributes].some((a) => a.name.startsWith('aria-'))).length,
      text: el.textContent,
    };
  });
  expect(out.classes.sort()).toEqual(['CODE.language-js', 'CODE.language-py']);
  expect(out.roles).toBe(0);
  expect(out.aria).toBe(0);
  expect(out.text).toContain('please send me your password');
});

test('Markdown renders in linear time: pathological replies take milliseconds, not seconds', async ({ page }) => {
  await openPage(page);
  const times = await page.evaluate(async () => {
    const r = (await import('/app/render.ts' as string)) as typeof import('../app/render');
    const el = document.createElement('div');
    document.body.append(el);
    // marked needed 5.5 s, 5.2 s, 6.8 s and 12 s for these (28 KB of unmatched emphasis, 8 KB of open links).
    const cases = { star: '*a '.repeat(9400), under: '_a '.repeat(9400), bold: '**a '.repeat(7000), links: '[a]('.repeat(2000), quotes: '>'.repeat(28000) };
    const out: Record<string, number> = {};
    for (const [k, text] of Object.entries(cases)) {
      const t0 = performance.now();
      r.renderMessage(el, text, { streaming: true });
      out[k] = performance.now() - t0;
    }
    return out;
  });
  for (const [k, ms] of Object.entries(times)) expect(ms, k).toBeLessThan(1500);
});

test('streaming repaints are paced by their cost: a slow paint is not repeated every frame', async ({ page }) => {
  await openPage(page);
  const paints = await page.evaluate(async () => {
    const { streamPainter } = (await import('/app/stream-paint.ts' as string)) as typeof import('../app/stream-paint');
    let n = 0;
    const busy = (ms: number) => {
      const t = performance.now();
      while (performance.now() - t < ms);
    };
    const p = streamPainter(() => {
      n++;
      busy(40);
    });
    // A token every 5 ms for 1.2 s.
    await new Promise<void>((done) => {
      const t0 = performance.now();
      const tick = () => {
        p.schedule();
        if (performance.now() - t0 < 1200) setTimeout(tick, 5);
        else done();
      };
      tick();
    });
    p.cancel();
    return n;
  });
  // 40 ms paints: every frame would be ~25 paints in 1.2 s; paced at 3x their cost, at most ~8.
  expect(paints).toBeGreaterThan(2);
  expect(paints).toBeLessThanOrEqual(9);
});
