/**
 * The record layout of the weight store (see docs/weight-store.md).
 *
 * meta store (database "webdms-weights"):
 *   `model:<modelKey>`   Manifest, the newest complete version of a model (what is served);
 *   `pending:<modelKey>` Manifest, a version being downloaded (what a resume continues);
 *   `file:<fileKey>`     FileRecord, written only after every chunk of that file is stored and verified.
 * chunk store (database "webdms-weight-chunks"):
 *   `<fileKey>#<index, 6 digits>` ChunkRecord, the bytes.
 *
 * modelKey is the model's base URL (it contains a Hugging Face revision); fileKey is
 * `<modelKey>|<file name>|<fileId>`, where fileId names the file's content (its SHA-256, else its
 * ETag, else size + Last-Modified, else the version), so a new version never reads an old file's bytes
 * and an unchanged file is shared between versions instead of downloaded again.
 */
import type { WeightFormat } from '../model/types';
import { Sha256 } from './sha256';

export interface FileEntry {
  name: string;
  size: number;
  /** Content identity (see above). */
  fileId: string;
  /** SHA-256 the server declared for the whole file. */
  sha256?: string;
  etag?: string;
  chunkSize: number;
}

export interface Manifest {
  key: string;
  /** What was asked for ('default', 'org/name', a URL). */
  spec: string;
  base: string;
  /** The Hugging Face revision in the URL (`resolve/<revision>/`), if any. */
  revision?: string;
  /** X-Repo-Commit of config.json, when the server sends it. */
  commit?: string;
  configEtag?: string;
  /** SHA-256 of config.json's bytes, when neither ETag nor commit could be read. */
  configSha256?: string;
  /** Quantized copies without a commit: the digest of the checkpoint's weight files (weightFilesId). */
  weightsId?: string;
  /** commit ?? configEtag ?? configSha256: what "the same version" means. */
  version: string;
  files: FileEntry[];
  /** Optional files the engine asks for that the server does not have (404). */
  absent: string[];
  totalBytes: number;
  createdAt: number;
  lastUsed: number;
  complete: boolean;
  /** A pending plan that must not be resumed as is (a declared hash failed): the next open plans again. */
  stale?: boolean;
  /**
   * Set on a quantized copy (worker/store/quantized-copy.ts): the converted form of the checkpoint at
   * `base`, made on this machine while the checkpoint streamed onto the GPU; `version` is the checkpoint's.
   */
  quantized?: { weights: WeightFormat };
}

export interface FileRecord {
  name: string;
  size: number;
  chunkSize: number;
  chunks: number;
  /** SHA-256 of every chunk, checked when a chunk is read back. */
  chunkSha256: string[];
  /** 'sha256': the whole file matched the server's SHA-256; 'size': only sizes and chunk hashes could be checked. */
  verified: 'sha256' | 'size';
  sha256?: string;
  completedAt: number;
}

export interface ChunkRecord {
  data: ArrayBuffer;
  size: number;
  sha256: string;
}

export const modelRecordKey = (modelKey: string): string => `model:${modelKey}`;
export const pendingRecordKey = (modelKey: string): string => `pending:${modelKey}`;
export const fileKey = (modelKey: string, f: Pick<FileEntry, 'name' | 'fileId'>): string => `${modelKey}|${f.name}|${f.fileId}`;
export const fileRecordKey = (fk: string): string => `file:${fk}`;
export const chunkKey = (fk: string, index: number): string => `${fk}#${String(index).padStart(6, '0')}`;
export const chunkPrefix = (fk: string): string => `${fk}#`;

export const chunkCount = (size: number, chunkSize: number): number => (size === 0 ? 0 : Math.ceil(size / chunkSize));
export const chunkLength = (size: number, chunkSize: number, index: number): number =>
  Math.min(chunkSize, size - index * chunkSize);

/** The index encoded in a chunk key. */
export const chunkIndexOf = (key: string): number => Number(key.slice(key.lastIndexOf('#') + 1));

const shortHash = (s: string): string => new Sha256().update(new TextEncoder().encode(s)).hex().slice(0, 20);

export function fileIdFor(info: { size: number; sha256?: string; etag?: string; lastModified?: string }, version: string): string {
  if (info.sha256) return `sha256-${info.sha256}`;
  if (info.etag) return `etag-${shortHash(info.etag)}`;
  if (info.lastModified) return `lm-${info.size}-${shortHash(info.lastModified)}`;
  return `v-${info.size}-${shortHash(version)}`;
}

/** The revision in a Hugging Face resolve URL. */
export function revisionOf(base: string): string | undefined {
  const m = /\/resolve\/([^/]+)\/?$/.exec(new URL(base).pathname);
  return m ? decodeURIComponent(m[1]) : undefined;
}
