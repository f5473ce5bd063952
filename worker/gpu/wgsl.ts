/**
 * WGSL source assembly shared by the kernels: conditional blocks (`// #if NAME`) and constants prepended
 * to a kernel's source (WGSL has neither includes nor a preprocessor).
 */

/**
 * Keeps the lines between `// #if NAME` and `// #else` / `// #endif` when `defines[NAME]`, else the
 * lines between `// #else` and `// #endif`. Blocks nest. Directive lines themselves are dropped.
 */
export function specialize(source: string, defines: Record<string, boolean>): string {
  const out: string[] = [];
  const stack: Array<{ parent: boolean; cond: boolean; inElse: boolean }> = [];
  let active = true;
  for (const line of source.split('\n')) {
    const m = /^\s*\/\/\s*#(if|else|endif)\b\s*(\w*)/.exec(line);
    if (!m) {
      if (active) out.push(line);
      continue;
    }
    if (m[1] === 'if') {
      if (!(m[2] in defines)) throw new Error(`specialize: #if ${m[2]} has no value`);
      stack.push({ parent: active, cond: defines[m[2]], inElse: false });
      active = active && defines[m[2]];
    } else {
      const top = stack[stack.length - 1];
      if (!top) throw new Error(`specialize: #${m[1]} without #if`);
      if (m[1] === 'else') {
        if (top.inElse) throw new Error('specialize: two #else');
        top.inElse = true;
        active = top.parent && !top.cond;
      } else {
        stack.pop();
        active = top.parent;
      }
    }
  }
  if (stack.length) throw new Error('specialize: unterminated #if');
  return out.join('\n');
}

/** `const NAME = <value>u;` lines for unsigned integer constants, prepended to a kernel's source. */
export function u32Constants(values: Record<string, number>): string {
  return Object.entries(values).map(([k, v]) => `const ${k} = ${v >>> 0}u;\n`).join('');
}
