/**
 * The picture of what the KV cache keeps: one row per (layer, KV head), one column per position of
 * the conversation (several positions per pixel when it is long). A pixel is bright when the positions
 * it covers are resident, dark when they were evicted; the DMS window at the right edge is outlined.
 */
import type { KvResidency } from '../worker/protocol';

export function drawKvMap(canvas: HTMLCanvasElement, r: KvResidency | null): void {
  const ctx = canvas.getContext('2d');
  if (!ctx) return;
  const dpr = globalThis.devicePixelRatio || 1;
  const width = Math.max(1, Math.round(canvas.clientWidth * dpr));
  const rows = r ? r.layers * r.kvHeads : 0;
  // Rows grow for small models so the map stays readable (about 110 CSS pixels tall at most).
  const rowH = Math.max(2, Math.round(Math.max(4, Math.min(14, 112 / Math.max(1, rows))) * dpr));
  const height = Math.max(rowH, rows * rowH);
  canvas.width = width;
  canvas.height = height;
  const css = getComputedStyle(canvas);
  const kept = css.getPropertyValue('--kv-kept').trim() || '#7c9cff';
  const gone = css.getPropertyValue('--kv-evicted').trim() || '#2a2f3a';
  const win = css.getPropertyValue('--kv-window').trim() || '#ffcc66';
  ctx.clearRect(0, 0, width, height);
  if (!r || r.tokens === 0) return;
  const cols = Math.min(width, r.tokens);
  const colW = width / cols;
  for (let row = 0; row < rows; row++) {
    for (let c = 0; c < cols; c++) {
      // The share of resident positions among those this column covers sets the colour's opacity.
      const p0 = Math.floor((c * r.tokens) / cols), p1 = Math.max(p0 + 1, Math.floor(((c + 1) * r.tokens) / cols));
      let on = 0;
      for (let p = p0; p < p1; p++) on += r.bits[row * r.tokens + p];
      const share = on / (p1 - p0);
      ctx.fillStyle = gone;
      ctx.globalAlpha = 1;
      ctx.fillRect(c * colW, row * rowH, Math.ceil(colW), rowH - 1);
      if (share > 0) {
        ctx.fillStyle = kept;
        ctx.globalAlpha = 0.25 + 0.75 * share;
        ctx.fillRect(c * colW, row * rowH, Math.ceil(colW), rowH - 1);
      }
    }
  }
  ctx.globalAlpha = 1;
  if (r.window !== null && r.tokens > r.window + 1) {
    const x = ((r.tokens - r.window - 1) / r.tokens) * width;
    ctx.strokeStyle = win;
    ctx.lineWidth = Math.max(1, dpr);
    ctx.strokeRect(x, 0.5, width - x - 0.5, height - 1);
  }
}

/** Resident share of the conversation (over all layers and heads), for the caption. */
export function residentShare(r: KvResidency): number {
  if (r.tokens === 0) return 1;
  let on = 0;
  for (const b of r.bits) on += b;
  return on / r.bits.length;
}
