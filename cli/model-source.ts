/** Maps the CLI's --model argument to a ModelSource. */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { HttpSource, resolveModelUrl, type ModelSource } from '../worker/model/source';
import { FolderSource } from '../worker/model/source-node';

/** The embedded default model, relative to the repo root (the CLI bundle lives in .cache/). */
export const DEFAULT_MODEL_DIR = fileURLToPath(new URL('../public/models/webdms-default/', import.meta.url));

export function modelSource(spec: string): ModelSource {
  if (spec === 'default') return new FolderSource(DEFAULT_MODEL_DIR);
  if (/^https?:\/\//.test(spec)) return new HttpSource(resolveModelUrl(spec));
  if (existsSync(spec)) return new FolderSource(spec);
  if (/^[\w.-]+\/[\w.-]+(@[\w.-]+)?$/.test(spec)) return new HttpSource(resolveModelUrl(spec));
  throw new Error(`--model "${spec}": no such folder, and not a URL or a Hugging Face repo id`);
}
