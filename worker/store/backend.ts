/**
 * Where the weight store keeps its records, and what it needs from the environment (quota, persistence,
 * locks). The browser implementation is IndexedDB through idb-keyval; Node tests inject a Map-backed
 * one. Everything here works in a Web Worker (no DOM).
 */
import { clear, createStore, del, get, promisifyRequest, set, type UseStore } from 'idb-keyval';

/** A string-keyed record store with prefix operations (an IndexedDB object store). */
export interface KeyValueStore {
  get<T>(key: string): Promise<T | undefined>;
  set(key: string, value: unknown): Promise<void>;
  del(key: string): Promise<void>;
  /** Keys starting with `prefix`, sorted. */
  keys(prefix?: string): Promise<string[]>;
  /** Deletes every key starting with `prefix`. */
  delPrefix(prefix: string): Promise<void>;
  clear(): Promise<void>;
}

export interface StorageEstimateLike {
  quota?: number;
  usage?: number;
}

export interface StoreBackend {
  /** Small records: model manifests and file-complete records. */
  meta: KeyValueStore;
  /** Chunk records (the bytes). */
  chunks: KeyValueStore;
  /** navigator.storage.estimate(), when there is one. */
  estimate(): Promise<StorageEstimateLike | null>;
  /** navigator.storage.persisted(): whether the browser may evict the data. null when unknown. */
  persisted(): Promise<boolean | null>;
  /** navigator.storage.persist(); only windows have it (not workers): null when unavailable. */
  persist(): Promise<boolean | null>;
  /** Runs `fn` holding an exclusive lock named `name`, across tabs when the Web Locks API exists. */
  withLock<T>(name: string, fn: () => Promise<T>): Promise<T>;
}

/** The end of a key range covering every key that starts with `prefix`. */
const PREFIX_END = '\uffff';

class IdbStore implements KeyValueStore {
  constructor(private readonly use: UseStore) {}
  get<T>(key: string): Promise<T | undefined> {
    return get<T>(key, this.use);
  }
  set(key: string, value: unknown): Promise<void> {
    return set(key, value, this.use);
  }
  del(key: string): Promise<void> {
    return del(key, this.use);
  }
  async keys(prefix = ''): Promise<string[]> {
    const ks = await this.use('readonly', (s) =>
      promisifyRequest(prefix ? s.getAllKeys(IDBKeyRange.bound(prefix, prefix + PREFIX_END)) : s.getAllKeys()),
    );
    return (ks as IDBValidKey[]).filter((k): k is string => typeof k === 'string').sort();
  }
  delPrefix(prefix: string): Promise<void> {
    return this.use('readwrite', (s) => {
      s.delete(IDBKeyRange.bound(prefix, prefix + PREFIX_END));
      return promisifyRequest(s.transaction);
    });
  }
  clear(): Promise<void> {
    return clear(this.use);
  }
}

/** In-process fallback for the lock when the Web Locks API is missing. */
const localLocks = new Map<string, Promise<unknown>>();

export async function withLocalLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const prev = localLocks.get(name) ?? Promise.resolve();
  let release!: () => void;
  const mine = new Promise<void>((r) => (release = r));
  const chained = prev.then(() => mine);
  localLocks.set(name, chained);
  await prev.catch(() => undefined);
  try {
    return await fn();
  } finally {
    release();
    if (localLocks.get(name) === chained) localLocks.delete(name);
  }
}

type NavigatorLike = {
  storage?: Partial<Pick<StorageManager, 'estimate' | 'persisted' | 'persist'>>;
  locks?: LockManager;
};

const nav = (): NavigatorLike | undefined => (globalThis as { navigator?: NavigatorLike }).navigator;

/** IndexedDB database names. Two databases, each with one object store (what idb-keyval's createStore makes). */
export const META_DB = 'webdms-weights';
export const CHUNK_DB = 'webdms-weight-chunks';

let idbBackend: StoreBackend | null = null;

/** The browser backend: IndexedDB via idb-keyval, navigator.storage, navigator.locks. */
export function idbStoreBackend(): StoreBackend {
  if (idbBackend) return idbBackend;
  if (typeof indexedDB === 'undefined') throw new Error('IndexedDB is not available here');
  idbBackend = {
    meta: new IdbStore(createStore(META_DB, 'meta')),
    chunks: new IdbStore(createStore(CHUNK_DB, 'chunks')),
    async estimate() {
      const s = nav()?.storage;
      if (!s?.estimate) return null;
      try {
        return await s.estimate();
      } catch {
        return null;
      }
    },
    async persisted() {
      const s = nav()?.storage;
      if (!s?.persisted) return null;
      try {
        return await s.persisted();
      } catch {
        return null;
      }
    },
    async persist() {
      const s = nav()?.storage;
      if (!s?.persist) return null;
      try {
        return await s.persist();
      } catch {
        return null;
      }
    },
    withLock(name, fn) {
      const locks = nav()?.locks;
      if (locks?.request) return locks.request(name, { mode: 'exclusive' }, fn) as Promise<Awaited<ReturnType<typeof fn>>>;
      return withLocalLock(name, fn);
    },
  };
  return idbBackend;
}

/**
 * For the page (windows only: workers have no `persist()`): asks the browser to keep this origin's
 * storage from eviction. Returns whether storage is persistent now (null when the API is missing).
 */
export async function requestPersistentStorage(): Promise<boolean | null> {
  const s = nav()?.storage;
  if (!s) return null;
  try {
    if (s.persisted && (await s.persisted())) return true;
    if (s.persist) return await s.persist();
  } catch {
    /* treated as unknown */
  }
  return null;
}
