import type { Gpu } from '../gpu/context';
import type { KvCache, KvCacheOptions, ModelShape } from './cache';
import { SlotKvCache } from './slot-cache';

/**
 * Builds the KV cache for a model: every policy ('full', 'dms', 'window', 'tova', 'h2o') is served by
 * the same slot layout (docs/kv-cache.md); the policy decides slot capacity, visibility and eviction.
 */
export function createKvCache(gpu: Gpu, modelShape: ModelShape, options: KvCacheOptions): KvCache {
  return new SlotKvCache(gpu, modelShape, options);
}
