// Builds the CLI (cli/main.ts and the engine it imports) into .cache/dms.mjs with esbuild, then runs it.
// The bundle is also what travels to the GPU machine (webgpu stays external: it is a native module).
import { build } from 'esbuild';
import { renameSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const outfile = `${root}.cache/dms.mjs`;
// Build beside it and rename: several CLI processes may start at once.
const tmpfile = `${root}.cache/dms.${process.pid}.mjs`;
await build({
  entryPoints: [`${root}cli/main.ts`],
  outfile: tmpfile,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['webgpu'],
  loader: { '.wgsl': 'text' },
  logLevel: 'error',
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
});
renameSync(tmpfile, outfile);
await import(outfile);
