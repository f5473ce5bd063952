/**
 * `dms convert --model <folder|URL|repo id> --weights q4|q8|f16|f32 --out <folder>`: writes the converted
 * form of a checkpoint (worker/load/converted.ts): the GPU packing as raw shards of at most 64 MB, a
 * manifest with per-shard SHA-256, and config.json / tokenizer files. Engine.load reads that folder (or
 * the same files on any static host) directly.
 */
import { createHash, type Hash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { nodeGpu } from '../worker/gpu/node';
import { readModelConfig } from '../worker/model/config';
import { convertModel, MANIFEST_FILE, type ConvertSink } from '../worker/load/converted';
import { fmtBytes, preflight } from '../worker/load/preflight';
import type { WeightFormat } from '../worker/model/types';
import { choiceArg, intArg, parseArgs, UsageError } from './args';
import { WEIGHTS } from './generate';
import { modelSource, netOptions } from './model-source';

/** Files in `dir`, written through a temporary name and renamed when complete. */
export class FolderSink implements ConvertSink {
  private fd: number | null = null;
  private file = '';
  private hash: Hash | null = null;
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }
  async openShard(file: string): Promise<void> {
    this.file = file;
    this.fd = openSync(join(this.dir, `${file}.part`), 'w');
    this.hash = createHash('sha256');
  }
  async write(bytes: Uint8Array): Promise<void> {
    let done = 0;
    while (done < bytes.byteLength) done += writeSync(this.fd!, bytes, done, bytes.byteLength - done);
    this.hash!.update(bytes);
  }
  async closeShard(): Promise<string> {
    closeSync(this.fd!);
    this.fd = null;
    renameSync(join(this.dir, `${this.file}.part`), join(this.dir, this.file));
    return this.hash!.digest('hex');
  }
  async writeFile(file: string, bytes: Uint8Array): Promise<void> {
    writeFileSync(join(this.dir, `${file}.part`), bytes);
    renameSync(join(this.dir, `${file}.part`), join(this.dir, file));
  }
}

export async function convertCommand(argv: string[]): Promise<void> {
  const { values, switches } = parseArgs(argv, { values: ['model', 'timeout', 'weights', 'out', 'shard-mb'], switches: ['json'] });
  const model = values.get('model');
  const out = values.get('out');
  if (!model) throw new UsageError('--model is required');
  if (!out) throw new UsageError('--out is required');
  const format: WeightFormat = choiceArg(values, 'weights', WEIGHTS) ?? 'q4';
  const shardMb = intArg(values, 'shard-mb', 1, 64)!;
  if (shardMb > 64) throw new UsageError('--shard-mb is at most 64');
  const source = modelSource(model, netOptions(values));
  const { config } = await readModelConfig(source);
  const gpu = await nodeGpu();
  // Only the buffer limits matter here (one matrix is on the GPU at a time), not the memory budget.
  const report = preflight(config, { maxBufferSize: gpu.caps.maxBufferSize, maxStorageBufferBindingSize: gpu.caps.maxStorageBufferBindingSize, memoryBytes: Number.MAX_SAFE_INTEGER }, { weights: format, maxContext: 16 });
  // A stale manifest must not describe new shards while they are written.
  rmSync(join(out, MANIFEST_FILE), { force: true });
  const t0 = performance.now();
  let last = 0;
  const manifest = await convertModel(gpu, source, config, format, new FolderSink(out), {
    shardBytes: shardMb * 1000 * 1000,
    onProgress: (done, total, what) => {
      const now = performance.now();
      if (!switches.has('json') && (now - last > 2000 || done === total)) {
        last = now;
        process.stderr.write(`[convert ${done}/${total} ${what}]\n`);
      }
    },
  });
  const ms = performance.now() - t0;
  const summary = {
    model,
    out,
    weights: format,
    shards: manifest.shards.length,
    bytes: manifest.totalBytes,
    sourceBytes: manifest.source.bytes,
    gpuBytes: report.formats[format].weightBytes,
    ms: Math.round(ms),
    adapter: gpu.caps.adapter,
  };
  if (switches.has('json')) process.stdout.write(JSON.stringify(summary) + '\n');
  else {
    process.stdout.write(
      `${out}: ${format}, ${manifest.shards.length} shards, ${fmtBytes(manifest.totalBytes)} (from ${fmtBytes(manifest.source.bytes)}) in ${(ms / 1000).toFixed(1)} s\n`,
    );
  }
}
