/**
 * Paces the repaint of a streaming reply. Each paint re-renders the whole reply (Markdown has no stable
 * prefix: a later `*` can turn earlier text into emphasis), so painting on every frame costs time that
 * grows with the reply. The next paint waits for a frame and at least `ratio` times as long as the last
 * paint took: painting takes at most about 1/(ratio + 1) of the main thread, however long the reply.
 */
export interface StreamPainter {
  /** New text arrived: paint soon. */
  schedule(): void;
  /** Stop painting (the reply is finished or abandoned); a scheduled paint is dropped. */
  cancel(): void;
}

export function streamPainter(paint: () => void, ratio = 3): StreamPainter {
  let frame = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let cost = 0;
  let lastEnd = -Infinity;
  let cancelled = false;
  const run = () => {
    frame = 0;
    if (cancelled) return;
    const t0 = performance.now();
    paint();
    lastEnd = performance.now();
    cost = lastEnd - t0;
  };
  return {
    schedule() {
      if (cancelled || frame || timer !== undefined) return;
      const wait = lastEnd + ratio * cost - performance.now();
      const go = () => {
        timer = undefined;
        frame = requestAnimationFrame(run);
      };
      if (wait > 0) timer = setTimeout(go, wait);
      else go();
    },
    cancel() {
      cancelled = true;
      if (frame) cancelAnimationFrame(frame);
      clearTimeout(timer);
      frame = 0;
      timer = undefined;
    },
  };
}
