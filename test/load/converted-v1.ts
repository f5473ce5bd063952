/**
 * A converted model's files rewritten as version 1 of the format (q8/q4 scales as f32, one a word, where
 * version 2 packs two f16 a word), for the tests that the engine still reads what older `dms convert`s wrote.
 * The f16 scales widen exactly, so a version-1 copy made this way must load to the same GPU buffers.
 */
import { createHash } from 'node:crypto';
import { MANIFEST_FILE, type ConvertedManifest } from '../../worker/load/converted';
import { f16BitsToF32, rowGroups, rowScaleWords, rowWords } from '../../worker/load/pack';

export function asVersion1(files: ReadonlyMap<string, Uint8Array>): Map<string, Uint8Array> {
  const m = JSON.parse(new TextDecoder().decode(files.get(MANIFEST_FILE)!)) as ConvertedManifest;
  if (m.version !== 2) throw new Error(`asVersion1: the manifest is version ${m.version}, not 2`);
  // Every item of every shard, in the order written, re-laid with f32 scale rows.
  type Item = { offset: number; bytes: () => Uint8Array; place: (offset: number) => void };
  const items: Item[][] = m.shards.map(() => []);
  const shardBytes = (i: number) => files.get(m.shards[i].file)!;
  for (const v of Object.values(m.vectors)) {
    items[v.shard].push({ offset: v.offset, bytes: () => shardBytes(v.shard).subarray(v.offset, v.offset + 4 * v.length), place: (o) => { v.offset = o; } });
  }
  for (const mat of Object.values(m.matrices)) {
    const dataRow = rowWords(mat.cols, mat.format) * 4, groups = rowGroups(mat.cols, mat.format), words = rowScaleWords(mat.cols, mat.format);
    for (const p of mat.pieces) {
      items[p.shard].push({ offset: p.data, bytes: () => shardBytes(p.shard).subarray(p.data, p.data + p.rows * dataRow), place: (o) => { p.data = o; } });
      if (p.scales === null) continue;
      const at = p.scales;
      items[p.shard].push({
        offset: at,
        bytes: () => {
          const packed = new Uint32Array(shardBytes(p.shard).slice(at, at + p.rows * words * 4).buffer);
          const f32 = new Float32Array(p.rows * groups);
          for (let r = 0; r < p.rows; r++) {
            for (let g = 0; g < groups; g++) {
              const w = packed[r * words + (g >> 1)];
              f32[r * groups + g] = f16BitsToF32(g & 1 ? w >>> 16 : w & 0xffff);
            }
          }
          return new Uint8Array(f32.buffer);
        },
        place: (o) => { p.scales = o; },
      });
    }
  }
  const out = new Map(files);
  m.shards.forEach((s, i) => {
    const parts: Uint8Array[] = [];
    let n = 0;
    for (const it of items[i].sort((a, b) => a.offset - b.offset)) {
      const b = it.bytes();
      it.place(n);
      parts.push(b);
      n += b.length;
    }
    const shard = new Uint8Array(n);
    let o = 0;
    for (const b of parts) { shard.set(b, o); o += b.length; }
    out.set(s.file, shard);
    s.bytes = n;
    s.sha256 = createHash('sha256').update(shard).digest('hex');
  });
  m.version = 1;
  m.totalBytes = m.shards.reduce((t, s) => t + s.bytes, 0);
  out.set(MANIFEST_FILE, new TextEncoder().encode(JSON.stringify(m)));
  return out;
}
