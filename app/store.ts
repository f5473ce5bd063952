/** Conversations in IndexedDB (idb-keyval, one record per conversation) and settings in localStorage. */
import { createStore, del, entries, get, set } from 'idb-keyval';
import type { ChainVote, ContextDropped, KvDtype, KvPolicyName, WeightFormat } from '../worker/protocol';
import type { StoredChain } from './chains';

export interface StoredMessage {
  role: 'user' | 'assistant';
  content: string;
  at: number;
  finishReason?: 'stop' | 'length' | 'abort';
  error?: string;
  usage?: MessageUsage;
  /** Hyper-scaling mode: the parallel chains of this reply and the vote that picked `content`. */
  chains?: StoredChain[];
  vote?: ChainVote;
  /** The oldest turns this reply's prompt left out (the conversation outgrew the context). */
  dropped?: ContextDropped;
}

/** A reply's sizes and timings. */
export interface MessageUsage {
  promptTokens: number;
  cachedTokens: number;
  completionTokens: number;
  decodeTokensPerSecond: number;
  /** The worker's prefill of the new prompt tokens. */
  prefillMs: number;
  /** From sending to the first streamed text (prefill, the first token, and the trip back), measured on the page. */
  ttftMs?: number;
}

/** Prompt tokens per second of a reply's prefill (the tokens not continued from the cache), or null. */
export function prefillTokensPerSecond(u: MessageUsage): number | null {
  const n = u.promptTokens - u.cachedTokens;
  return n > 0 && u.prefillMs > 0 ? n / (u.prefillMs / 1000) : null;
}

export interface Conversation {
  id: string;
  title: string;
  createdAt: number;
  updatedAt: number;
  /** The model spec it was held with (informational). */
  model?: string;
  /** This conversation's system prompt; absent: the settings' default. */
  systemPrompt?: string;
  messages: StoredMessage[];
}

const convStore = createStore('webdms', 'conversations');

export const newId = (): string => (crypto.randomUUID ? crypto.randomUUID() : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`);

export async function listConversations(): Promise<Conversation[]> {
  const all = await entries<string, Conversation>(convStore);
  return all.map(([, c]) => c).filter((c) => c && Array.isArray(c.messages)).sort((a, b) => b.updatedAt - a.updatedAt);
}

export const loadConversation = (id: string): Promise<Conversation | undefined> => get<Conversation>(id, convStore);

export async function saveConversation(c: Conversation): Promise<void> {
  c.updatedAt = Date.now();
  // Structured clone of a plain copy: never store DOM or proxies.
  await set(c.id, JSON.parse(JSON.stringify(c)), convStore);
}

export const deleteConversation = (id: string): Promise<void> => del(id, convStore);

export function titleFrom(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > 48 ? `${line.slice(0, 47)}…` : line || 'New chat';
}

export type KvChoice = KvPolicyName | 'auto';

export interface Settings {
  model: string;
  temperature: number;
  topP: number;
  topK: number;
  maxTokens: number;
  kv: KvChoice;
  /** Tokens kept per layer and KV head (training-free policies) or the DMS slot cap; 0 = the engine's default. */
  kvBudget: number;
  /** Most tokens per conversation; 0 = the engine's default: the model's own limit, at most 4096. */
  maxContext: number;
  /** How the KV cache stores K and V (docs/kv-cache.md): f16 (the engine's default), f32, q8 or q4. */
  kvDtype: KvDtype;
  weights: WeightFormat | 'auto';
  systemPrompt: string;
  /** Parallel reasoning chains per reply (1 = off); more than 1 samples that many and votes (docs/hyperscaling.md). */
  chains: number;
  theme: 'system' | 'light' | 'dark';
  recentModels: string[];
  /** The first-run choice of a model was made (app/welcome.ts); settings saved before it existed count as made. */
  welcomed: boolean;
}

export const DEFAULT_SETTINGS: Settings = {
  model: 'default',
  temperature: 0.7,
  topP: 0.9,
  topK: 40,
  maxTokens: 512,
  kv: 'auto',
  kvBudget: 0,
  maxContext: 0,
  kvDtype: 'f16',
  weights: 'auto',
  systemPrompt: '',
  chains: 1,
  theme: 'system',
  recentModels: [],
  welcomed: false,
};

const SETTINGS_KEY = 'webdms.settings';

export function loadSettings(): Settings {
  try {
    const raw = localStorage.getItem(SETTINGS_KEY);
    if (raw) return { ...DEFAULT_SETTINGS, welcomed: true, ...(JSON.parse(raw) as Partial<Settings>) };
  } catch {
    /* corrupt or unavailable storage */
  }
  return { ...DEFAULT_SETTINGS };
}

export function saveSettings(s: Settings): void {
  try {
    localStorage.setItem(SETTINGS_KEY, JSON.stringify(s));
  } catch {
    /* storage full or disabled: settings last for this visit */
  }
}
