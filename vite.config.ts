import { defineConfig, type Plugin } from 'vite';

/** Imports `*.wgsl` files as strings. */
function wgsl(): Plugin {
  return {
    name: 'wgsl',
    transform(code, id) {
      if (id.endsWith('.wgsl')) return { code: `export default ${JSON.stringify(code)};`, map: null };
    },
  };
}

export default defineConfig({
  plugins: [wgsl()],
  worker: { format: 'es', plugins: () => [wgsl()] },
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
