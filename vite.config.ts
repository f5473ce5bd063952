/// <reference types="vitest/config" />
import { defineConfig, type Plugin } from 'vite';
import { VitePWA } from 'vite-plugin-pwa';

/** Imports `*.wgsl` files as strings. */
function wgsl(): Plugin {
  return {
    name: 'wgsl',
    transform(code, id) {
      if (id.endsWith('.wgsl')) return { code: `export default ${JSON.stringify(code)};`, map: null };
    },
  };
}

/**
 * bench.html is a measuring tool, not part of the app: no service worker registration or manifest in it (a
 * service worker installing in the background would take CPU from the measurement), and it is not precached.
 */
function benchPageWithoutPwa(): Plugin {
  return {
    name: 'bench-page-without-pwa',
    apply: 'build',
    // After vite-plugin-pwa's own (post) HTML transform, which adds both to every page.
    enforce: 'post',
    transformIndexHtml: {
      order: 'post',
      handler(html, ctx) {
        if (!ctx.path.endsWith('/bench.html')) return html;
        return html.replace(/<script id="vite-plugin-pwa:register-sw"[^>]*><\/script>/, '').replace(/<link rel="manifest"[^>]*>/, '');
      },
    },
  };
}

/**
 * The Content-Security-Policy of the built page (docs/security.md): scripts, styles and workers only from
 * the app's own origin (no inline script, no eval), connections to the app's origin and to model hosts
 * (any https host, since the user may load a model from anywhere, and local http servers), no plugins,
 * frames or form targets elsewhere.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self' https: http://localhost:* http://127.0.0.1:*",
  "worker-src 'self'",
  "manifest-src 'self'",
  "object-src 'none'",
  "frame-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
].join('; ');

/** Puts the policy in the built index.html as a meta tag, so the page keeps it wherever it is served from (the PWA's cache too). */
function contentSecurityPolicy(): Plugin {
  return {
    name: 'webdms-csp',
    apply: 'build',
    transformIndexHtml: () => [{ tag: 'meta', attrs: { 'http-equiv': 'Content-Security-Policy', content: CONTENT_SECURITY_POLICY }, injectTo: 'head-prepend' }],
  };
}

/**
 * The app's service worker (build only): precaches the app shell, the worker bundle and widget.js, so
 * the page reloads offline. Model weights are not precached (too large; see docs).
 */
const pwa = VitePWA({
  registerType: 'autoUpdate',
  injectRegister: 'script',
  includeAssets: ['icon.svg', 'icons/*.png'],
  manifest: {
    name: 'WebDMS: private chat on your GPU',
    short_name: 'WebDMS',
    description: 'A language model that runs in your browser on WebGPU, with a KV cache compressed by Dynamic Memory Sparsification.',
    start_url: './',
    scope: './',
    display: 'standalone',
    background_color: '#0f1115',
    theme_color: '#5b5bf0',
    icons: [
      { src: 'icons/icon-192.png', sizes: '192x192', type: 'image/png' },
      { src: 'icons/icon-512.png', sizes: '512x512', type: 'image/png' },
      { src: 'icons/icon-512-maskable.png', sizes: '512x512', type: 'image/png', purpose: 'maskable' },
      { src: 'icon.svg', sizes: 'any', type: 'image/svg+xml' },
    ],
  },
  workbox: {
    globPatterns: ['**/*.{js,css,html,svg,png,webmanifest}'],
    globIgnores: ['models/**', 'bench.html', 'assets/bench-*', 'assets/browser-bench-*'],
    navigateFallback: 'index.html',
    navigateFallbackDenylist: [/\/models\//, /\.(json|safetensors|js|wasm)$/],
    maximumFileSizeToCacheInBytes: 8 * 1024 * 1024,
    cleanupOutdatedCaches: true,
    // A new deploy takes over at once, even while a tab is open; the page then offers a reload (app/sw-update.ts).
    skipWaiting: true,
    clientsClaim: true,
  },
});

export default defineConfig({
  // Relative URLs in the build, so the app and widget.js work from any folder of any host.
  base: './',
  // No index.html for unknown paths (dev and preview): a model file that is not there must be a 404, not a page.
  appType: 'mpa',
  plugins: [wgsl(), pwa, benchPageWithoutPwa(), contentSecurityPolicy()],
  // `vite preview` sends the policy as a header too, which also covers the worker scripts it serves.
  preview: { headers: { 'Content-Security-Policy': CONTENT_SECURITY_POLICY } },
  // WEBDMS_NO_HMR=1 (the e2e dev server): pages are not reloaded when files change under a running test.
  server: process.env.WEBDMS_NO_HMR ? { hmr: false, watch: null } : {},
  // Pre-bundled up front, so a first visit never triggers a dependency re-optimisation reload.
  optimizeDeps: { include: ['comlink', 'dompurify', 'markdown-it', 'idb-keyval', '@huggingface/jinja', '@huggingface/tokenizers'] },
  build: {
    rollupOptions: {
      // The chat page, the embeddable <webdms-chat> as widget.js at the root of the output, and the
      // benchmark page (docs/benchmarks.md, "In a browser").
      input: { main: 'index.html', widget: 'app/widget/widget.ts', bench: 'bench.html' },
      output: { entryFileNames: (chunk) => (chunk.name === 'widget' ? 'widget.js' : 'assets/[name]-[hash].js') },
    },
  },
  worker: { format: 'es', plugins: () => [wgsl()] },
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 300_000,
    hookTimeout: 120_000,
  },
});
