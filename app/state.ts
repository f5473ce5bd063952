/**
 * The chat page's state, in one place: the settings (saved, with this visit's overrides from the address),
 * the model (its state, what it is, the spec it was loaded from), the open conversation and the reply being
 * generated, the KV statistics the memory panel shows, and the engine client with its tab lock. The other
 * modules read and change it here and paint it into the DOM.
 */
import { EngineClient, TabLock } from './engine-client';
import { DEFAULT_SETTINGS, loadSettings, newId, type Conversation, type Settings, type StoredMessage } from './store';
import type { KvStats, ModelInfo } from '../worker/protocol';

const params = new URLSearchParams(location.search);
const numParam = (k: string): number | undefined => {
  const v = params.get(k);
  return v !== null && v !== '' && Number.isFinite(Number(v)) ? Number(v) : undefined;
};

export const settings: Settings = loadSettings();
/**
 * `?maxTokens=`, `?temperature=`, `?weights=` (f32|f16|q8|q4) start this visit with those values (not saved
 * unless settings are saved); `?seed=` fixes sampling.
 */
export const urlSeed = numParam('seed');
{
  const w = params.get('weights');
  if (w === 'f32' || w === 'f16' || w === 'q8' || w === 'q4') settings.weights = w;
  const mt = numParam('maxTokens');
  const temp = numParam('temperature');
  if (mt !== undefined) settings.maxTokens = Math.max(1, Math.round(mt));
  if (temp !== undefined) settings.temperature = temp;
}

/** lost: the GPU device went away (driver reset, GPU process crash); the model reloads on the next send. */
export type ModelState = 'idle' | 'loading' | 'ready' | 'error' | 'elsewhere' | 'lost';

/** The reply being generated. */
export interface Generation {
  msg: StoredMessage;
  el: HTMLElement;
  done: Promise<void>;
  stopped: boolean;
}

export interface PageState {
  /**
   * `?model=<url or repo id>` points the page at a model without saving it (tests use it for fixtures); one
   * that is not the saved choice is loaded only once the user agrees (app/model-consent.ts).
   */
  urlModel: string | null;
  modelState: ModelState;
  modelInfo: ModelInfo | null;
  /** The spec of the model loaded (or loading) now. */
  loadedSpec: string;
  conv: Conversation;
  generation: Generation | null;
  lastKv: KvStats | null;
  /** Tokens in context and kept over this conversation (the memory panel's sparkline). */
  kvHistory: { seen: number; kept: number }[];
}

export const state: PageState = {
  urlModel: params.get('model'),
  modelState: 'idle',
  modelInfo: null,
  loadedSpec: '',
  conv: blankConversation(),
  generation: null,
  lastKv: null,
  kvHistory: [],
};

export const client = new EngineClient();
export const lock = new TabLock();

/** The model this visit is for: the one the address names, else the saved choice. */
export function currentSpec(): string {
  return state.urlModel ?? settings.model;
}

export function blankConversation(): Conversation {
  const now = Date.now();
  return { id: newId(), title: 'New chat', createdAt: now, updatedAt: now, messages: [] };
}

/** Takes `?model=` out of the address (the model chosen instead sticks on the next visit). */
export function removeModelParam(): void {
  const u = new URL(location.href);
  u.searchParams.delete('model');
  window.history.replaceState(null, '', u);
}

/** For tests and debugging: the state and the default settings. */
Object.assign(window, {
  __webdms: {
    get state() {
      return { modelState: state.modelState, modelInfo: state.modelInfo, lastKv: state.lastKv, conversationId: state.conv.id, generating: state.generation !== null };
    },
    defaults: DEFAULT_SETTINGS,
  },
});
