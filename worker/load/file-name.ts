/**
 * File names that come from inside a model (a safetensors index's weight_map, a converted model's shard
 * list) are untrusted: a name like `//other-host/x`, `https://…`, `/etc/x` or `../x` would make the
 * engine fetch or read from somewhere other than the model's own folder. Only plain relative names are
 * accepted: segments of letters, digits, spaces, `_`, `-`, `.` and `+`, joined by `/`, none of them `.` or `..`.
 */
import { ModelLoadError } from './source';

const SEGMENT = /^[\w.+ -]+$/;

/** Why `name` is not a plain relative file name, or null when it is one. */
export function fileNameProblem(name: unknown): string | null {
  if (typeof name !== 'string' || name === '') return 'it is not a file name';
  if (name.length > 512) return 'it is longer than 512 characters';
  const segments = name.split('/');
  if (segments[0] === '') return 'it is an absolute path or names another host';
  for (const s of segments) {
    if (s === '') return 'it has an empty path segment';
    if (/^\.+$/.test(s)) return `it steps out of the model's folder ("${s}")`;
    if (!SEGMENT.test(s)) return `it contains characters a plain file name does not (a scheme, "\\", "?", "#", "%" or controls)`;
  }
  return null;
}

/** `name` when it is a plain file name under the model's base; a ModelLoadError naming `where` otherwise. */
export function checkModelFileName(name: unknown, where: string): string {
  const problem = fileNameProblem(name);
  if (problem) {
    throw new ModelLoadError(`${where} names the file ${JSON.stringify(name)}, which is refused: ${problem}. Only plain file names under the model's own folder are loaded.`);
  }
  return name as string;
}
