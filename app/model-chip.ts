/** The model chip in the top bar: the model's name and size, and the status dot that shows the model's state. */
import { $ } from './dom';
import { formatCount } from './format';
import { modelDisplayName, specLabel } from './model-spec';
import { updateComposer } from './composer';
import { DEMO_SHORT, isDemoSpec } from './demo-model';
import { currentSpec, state, type ModelState } from './state';

export function setModelState(s: ModelState): void {
  state.modelState = s;
  $('status-dot').dataset.state = s;
  updateComposer();
}

export function updateModelChip(): void {
  const { modelInfo, modelState, loadedSpec } = state;
  const name = $('model-name');
  const meta = $('model-meta');
  const demo = isDemoSpec(modelState === 'ready' || modelState === 'loading' ? loadedSpec : currentSpec());
  const badge = $('model-badge');
  badge.hidden = !demo;
  $('model-about').textContent = demo ? `Offline demo model: ${DEMO_SHORT.replace(/^15M-parameter offline demo: /, '15M parameters, ')}.` : '';
  $('model-about').hidden = !demo;
  if (modelInfo && modelState === 'ready') {
    name.textContent = isDemoSpec(loadedSpec) ? specLabel(loadedSpec) : modelDisplayName(loadedSpec, modelInfo.name);
    name.title = modelInfo.name;
    meta.textContent = [formatCount(modelInfo.parameters), modelInfo.weights, modelInfo.dms ? 'DMS' : null].filter(Boolean).join(' · ');
  } else {
    name.textContent = modelState === 'loading' ? `Loading ${specLabel(loadedSpec)}…` : modelState === 'elsewhere' ? 'In use in another tab' : specLabel(currentSpec());
    meta.textContent = modelState === 'error' ? 'failed to load' : modelState === 'idle' ? 'not loaded' : modelState === 'lost' ? 'GPU lost: reloads on send' : '';
  }
  $('model-chip').setAttribute('aria-label', `Choose model (now: ${name.textContent}${demo ? `, ${DEMO_SHORT}` : ''})`);
}
