// WGSL sources are imported as strings: Vite/Vitest through the `wgsl` plugin in vite.config.ts,
// the CLI bundle through esbuild's text loader (scripts/dms.mjs).
declare module '*.wgsl' {
  const source: string;
  export default source;
}
