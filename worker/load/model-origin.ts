/**
 * What loading a model would fetch, before anything is stored: where it comes from and how big its files
 * are (HEAD requests only, and the small index or manifest that lists the weight shards). The page shows
 * this when a link asks it to load a model that is not the user's saved choice (app/model-consent.ts).
 */
import { checkModelFileName } from './file-name';
import type { ModelOrigin } from '../protocol';
import { listModels } from '../store';
import { Remote, type RemoteFileInfo } from '../store/remote';

const FILES = ['config.json', 'generation_config.json', 'dms_metadata.json', 'tokenizer.json', 'tokenizer_config.json'];

/** The weight files: a converted model's shards, model.safetensors, or the index and its shards. */
async function weightFiles(remote: Remote): Promise<RemoteFileInfo[]> {
  const listed = async (index: string, names: (json: unknown) => unknown[]): Promise<RemoteFileInfo[]> => {
    const info = await remote.probe(index);
    if (!info) return [];
    const body = await remote.fetchRange(index, 0, info.size, info.size);
    const files = [...new Set(names(JSON.parse(new TextDecoder().decode(body))))].map((f) => checkModelFileName(f, remote.url(index)));
    const shards = await Promise.all(files.map((f) => remote.probe(f)));
    return [info, ...shards.filter((s): s is RemoteFileInfo => s !== null)];
  };
  const converted = await listed('webdms-manifest.json', (j) => ((j as { shards?: { file?: unknown }[] }).shards ?? []).map((s) => s?.file));
  if (converted.length) return converted;
  const single = await remote.probe('model.safetensors');
  if (single) return [single];
  return listed('model.safetensors.index.json', (j) => Object.values((j as { weight_map?: Record<string, unknown> }).weight_map ?? {}));
}

export async function describeModel(base: string, opts: { fetch?: typeof fetch; timeoutMs?: number } = {}): Promise<ModelOrigin> {
  const url = new URL(base);
  const stored = (await listModels().catch(() => [])).some((m) => m.complete && (m.id === base || m.id.startsWith(`${base}#`)));
  const out: ModelOrigin = { base, origin: url.origin, bytes: null, files: 0, stored };
  const remote = new Remote(base, { fetch: opts.fetch, stallTimeoutMs: opts.timeoutMs ?? 10_000 });
  try {
    const config = await remote.probe('config.json');
    if (!config) return { ...out, problem: `There is no model at this address: config.json was not found at ${remote.url('config.json')}.` };
    const infos = [config, ...(await Promise.all(FILES.slice(1).map((f) => remote.probe(f)))).filter((i): i is RemoteFileInfo => i !== null), ...(await weightFiles(remote))];
    return { ...out, bytes: infos.reduce((n, i) => n + i.size, 0), files: infos.length };
  } catch (e) {
    return { ...out, problem: `Its size could not be checked: ${(e as Error)?.message ?? e}` };
  }
}
