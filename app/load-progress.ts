/** The model's load progress under the top bar: phase, file, bytes, speed and time left. */
import { $ } from './dom';
import { formatBytes, formatDuration } from './format';
import type { LoadProgress } from '../worker/protocol';

const progressSpeed = { t: 0, bytes: 0, bps: 0 };

export function showProgress(p: LoadProgress): void {
  const box = $('progress');
  box.hidden = false;
  const phase = {
    fetch: 'Downloading',
    stream: 'Downloading and quantizing on the GPU',
    upload: 'Loading weights onto the GPU',
    store: 'Saving the quantized model for the next start',
    compile: 'Compiling GPU kernels',
    ready: 'Ready',
  }[p.phase];
  $('progress-phase').textContent = phase;
  $('progress-file').textContent = p.file ?? '';
  const pct = p.totalBytes > 0 ? Math.min(100, (100 * p.loadedBytes) / p.totalBytes) : 0;
  $('progress-fill').style.width = `${pct.toFixed(1)}%`;
  $('progress-fill').classList.toggle('indeterminate', p.totalBytes <= 0);
  $('progress-bar').setAttribute('aria-valuenow', pct.toFixed(0));
  $('progress-bytes').textContent = p.totalBytes > 0 ? `${formatBytes(p.loadedBytes)} of ${formatBytes(p.totalBytes)} (${pct.toFixed(0)}%)` : p.loadedBytes > 0 ? formatBytes(p.loadedBytes) : 'Starting…';
  // The worker reports speed while fetching; otherwise smooth our own estimate.
  const now = performance.now();
  if (progressSpeed.t && now > progressSpeed.t && p.loadedBytes >= progressSpeed.bytes) {
    const inst = ((p.loadedBytes - progressSpeed.bytes) * 1000) / (now - progressSpeed.t);
    progressSpeed.bps = progressSpeed.bps ? 0.7 * progressSpeed.bps + 0.3 * inst : inst;
  }
  progressSpeed.t = now;
  progressSpeed.bytes = p.loadedBytes;
  const bps = p.bytesPerSecond ?? progressSpeed.bps;
  const fetching = p.phase !== 'compile' && p.phase !== 'ready';
  $('progress-speed').textContent = fetching && bps > 0 ? `${formatBytes(bps)}/s` : '';
  $('progress-eta').textContent = fetching && bps > 0 && p.totalBytes > p.loadedBytes ? `${formatDuration((p.totalBytes - p.loadedBytes) / bps)} left` : '';
}

export function hideProgress(): void {
  $('progress').hidden = true;
  progressSpeed.t = 0;
  progressSpeed.bytes = 0;
  progressSpeed.bps = 0;
}
