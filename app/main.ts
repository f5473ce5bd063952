/**
 * The chat page: wires its parts together (app/README.md has the map). The state they share is in
 * app/state.ts; each part below paints and handles one region of index.html.
 */
import './styles.css';
import { adapterFacts, SOFTWARE_EXPECTED } from './adapter';
import { newVersion, softwareAdapter } from './banners';
import { initComposer, updateComposer } from './composer';
import { renderLog, setMessageActions } from './conversation-log';
import { initConversations, renderConvList, updateSystemButton } from './conversations';
import { initMemoryPanel } from './memory-panel';
import { updateModelChip } from './model-chip';
import { initModelDialog, openModelDialog } from './model-dialog';
import { letModelGo, loadModel, startModel } from './model-loader';
import { editAndResend, regenerate, send } from './reply';
import { initSettingsDialog } from './settings-dialog';
import { currentSpec, lock, state } from './state';
import { watchForUpdates } from './sw-update';
import { applyTheme, initTheme } from './theme';
import { initWelcome } from './welcome';

initTheme();
initComposer(send);
setMessageActions({ regenerate: () => void regenerate(), editAndResend: (i, t) => void editAndResend(i, t) });
initConversations();
initMemoryPanel();
initSettingsDialog(() => void loadModel(state.loadedSpec || currentSpec()));
initModelDialog((spec) => void loadModel(spec, { save: true }));
initWelcome((spec) => void loadModel(spec, { save: true }), openModelDialog, renderLog);
lock.onLost = letModelGo;
watchForUpdates(newVersion);

applyTheme();
renderLog();
updateComposer();
updateModelChip();
updateSystemButton();
void renderConvList();
void startModel();
void adapterFacts().then((a) => {
  if (a?.software) softwareAdapter(a.name, SOFTWARE_EXPECTED);
});
