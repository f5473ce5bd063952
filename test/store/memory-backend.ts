/** A Map-backed StoreBackend for Node tests: values are structured-cloned like IndexedDB does. */
import { withLocalLock, type KeyValueStore, type StoreBackend } from '../../worker/store/backend';

export class MemoryKv implements KeyValueStore {
  readonly map = new Map<string, unknown>();
  /** Called before every set; throw from it to simulate a failing write. */
  beforeSet?: (key: string, value: unknown) => void;
  async get<T>(key: string): Promise<T | undefined> {
    const v = this.map.get(key);
    return v === undefined ? undefined : (structuredClone(v) as T);
  }
  async set(key: string, value: unknown): Promise<void> {
    this.beforeSet?.(key, value);
    this.map.set(key, structuredClone(value));
  }
  async del(key: string): Promise<void> {
    this.map.delete(key);
  }
  async keys(prefix = ''): Promise<string[]> {
    return [...this.map.keys()].filter((k) => k.startsWith(prefix)).sort();
  }
  async delPrefix(prefix: string): Promise<void> {
    for (const k of [...this.map.keys()]) if (k.startsWith(prefix)) this.map.delete(k);
  }
  async clear(): Promise<void> {
    this.map.clear();
  }
}

export class MemoryBackend implements StoreBackend {
  readonly meta = new MemoryKv();
  readonly chunks = new MemoryKv();
  /** The quota estimate() reports (bytes); usage is the stored chunk bytes. */
  quota = 10 * 2 ** 30;
  isPersisted = false;
  persistCalls = 0;
  /** Whether persist() exists here (false: like a worker). */
  canPersist = true;

  usage(): number {
    let n = 0;
    for (const v of this.chunks.map.values()) n += (v as { data: ArrayBuffer }).data.byteLength;
    return n;
  }
  async estimate() {
    return { quota: this.quota, usage: this.usage() };
  }
  async persisted() {
    return this.isPersisted;
  }
  async persist() {
    if (!this.canPersist) return null;
    this.persistCalls++;
    this.isPersisted = true;
    return true;
  }
  withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    return withLocalLock(name, fn);
  }
}
