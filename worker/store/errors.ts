/** Typed errors of the weight store. Each carries what the UI needs to offer a way out. */
import { ModelLoadError } from '../load/source';

export const formatBytes = (n: number): string => {
  if (!Number.isFinite(n)) return String(n);
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(v >= 100 ? 0 : 1)} ${units[u]}`;
};

export interface StoredModelSummary {
  id: string;
  name: string;
  bytes: number;
}

/**
 * The model does not fit in the storage the browser grants this site. The UI can offer: run from
 * memory without storing (open again with `memoryFallback: true`), or delete stored models
 * (`otherModels`, largest first) and try again.
 */
export class StorageQuotaError extends Error {
  readonly kind = 'quota';
  constructor(
    /** Bytes still to store for this model. */
    readonly requiredBytes: number,
    /** Bytes the browser says are free (quota - usage); NaN when the write itself was refused. */
    readonly availableBytes: number,
    readonly quotaBytes: number,
    readonly usageBytes: number,
    /** The whole model's size. */
    readonly modelBytes: number,
    /** Other stored models that could be deleted to make room. */
    readonly otherModels: StoredModelSummary[],
    detail?: string,
  ) {
    const others = otherModels.reduce((n, m) => n + m.bytes, 0);
    super(
      (detail ? `${detail} ` : '') +
        `Not enough storage for this model: it needs ${formatBytes(requiredBytes)} more` +
        (Number.isFinite(availableBytes)
          ? `, but only ${formatBytes(Math.max(0, availableBytes))} is free (this site may use ${formatBytes(quotaBytes)}, ${formatBytes(usageBytes)} already used; `
          : ` (the browser reports ${formatBytes(usageBytes)} used of ${formatBytes(quotaBytes)}, but its real limit is lower; `) +
        `the model is ${formatBytes(modelBytes)} in all). ` +
        `You can run it from memory without storing it (it downloads again next time)` +
        (otherModels.length ? `, or delete stored models to free up to ${formatBytes(others)}.` : ', or free disk space and try again.'),
    );
    this.name = 'StorageQuotaError';
  }
}

/** A downloaded file does not match its size or its SHA-256; the bad copy was deleted. */
export class IntegrityError extends ModelLoadError {
  readonly kind = 'integrity';
  constructor(message: string, url?: string) {
    super(message, url);
    this.name = 'IntegrityError';
  }
}

/** IndexedDB cannot be used (private mode in some browsers, blocked storage, a broken database). */
export class StorageUnavailableError extends Error {
  readonly kind = 'unavailable';
  constructor(readonly cause: unknown) {
    super(
      `This browser does not let the site store the model (${(cause as Error)?.message ?? cause}). ` +
        `You can run it from memory without storing it; it downloads again next time.`,
    );
    this.name = 'StorageUnavailableError';
  }
}

export const isQuotaExceeded = (e: unknown): boolean => {
  const name = (e as { name?: string })?.name;
  return name === 'QuotaExceededError' || name === 'NS_ERROR_DOM_QUOTA_REACHED' || /quota/i.test((e as Error)?.message ?? '');
};
