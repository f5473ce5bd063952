/** A model in a local folder (Node only: the CLI and tests). */
import { open, readFile, stat } from 'node:fs/promises';
import { isAbsolute, join, normalize, resolve, sep } from 'node:path';
import { fileNameProblem } from './file-name';
import { checkRange, ModelLoadError, type ModelSource } from './source';

export class FolderSource implements ModelSource {
  readonly name: string;
  private readonly root: string;

  constructor(folder: string) {
    this.root = resolve(folder);
    this.name = this.root;
  }

  private path(file: string): string {
    const problem = fileNameProblem(file);
    if (problem) throw new ModelLoadError(`File name ${JSON.stringify(file)} is refused in ${this.root}: ${problem}`);
    const rel = normalize(file);
    if (isAbsolute(rel) || rel === '..' || rel.startsWith('..' + sep)) {
      throw new ModelLoadError(`File name ${JSON.stringify(file)} leaves the model folder ${this.root}`);
    }
    return join(this.root, rel);
  }

  private missing(file: string, e: unknown): never {
    const code = (e as { code?: string })?.code;
    if (code === 'ENOENT') throw new ModelLoadError(`Missing file ${file} in ${this.root}`, this.path(file), 404);
    throw new ModelLoadError(`Cannot read ${this.path(file)}: ${(e as Error)?.message ?? e}`, this.path(file));
  }

  async exists(file: string): Promise<boolean> {
    try {
      return (await stat(this.path(file))).isFile();
    } catch (e) {
      if ((e as { code?: string })?.code === 'ENOENT') return false;
      throw e;
    }
  }

  async size(file: string): Promise<number> {
    try {
      return (await stat(this.path(file))).size;
    } catch (e) {
      this.missing(file, e);
    }
  }

  async read(file: string, offset: number, length: number): Promise<Uint8Array> {
    checkRange(offset, length);
    let fh;
    try {
      fh = await open(this.path(file), 'r');
    } catch (e) {
      this.missing(file, e);
    }
    try {
      const out = new Uint8Array(length);
      let filled = 0;
      while (filled < length) {
        const { bytesRead } = await fh.read(out, filled, length - filled, offset + filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      if (filled < length) {
        const size = (await fh.stat()).size;
        throw new ModelLoadError(
          `Read past the end of ${this.path(file)}: ${length} bytes at ${offset}, the file has ${size}`, this.path(file));
      }
      return out;
    } finally {
      await fh.close();
    }
  }

  async text(file: string): Promise<string> {
    try {
      return await readFile(this.path(file), 'utf8');
    } catch (e) {
      this.missing(file, e);
    }
  }
}
