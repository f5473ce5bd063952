import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listTensors, readTensorF32, readTensorRows, type TensorInfo } from '../../worker/load/safetensors';
import { HttpSource, type ModelSource } from '../../worker/load/source';
import { FolderSource } from '../../worker/load/source-node';
import { serveFiles, writeSafetensors, type TestServer, type TestTensor } from './helpers';

/** Values exactly representable in bf16 and f16 (small integers and halves), so every dtype reads back exactly. */
const vals = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => (((i * 37 + seed * 11) % 41) - 20) / 2);

const embed: TestTensor = { name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [7, 5], data: vals(35, 1) };
const q: TestTensor = { name: 'model.layers.0.self_attn.q_proj.weight', dtype: 'F16', shape: [3, 4], data: vals(12, 2) };
const norm: TestTensor = { name: 'model.norm.weight', dtype: 'F32', shape: [5], data: Float32Array.from([0.1, -2.5e-8, 3.4e38, 1, Math.PI]) };
const scalar: TestTensor = { name: 'scale', dtype: 'F32', shape: [], data: [2.5] };
const empty: TestTensor = { name: 'nothing', dtype: 'BF16', shape: [0, 4], data: [] };

/** Layouts: each is a folder (file name → bytes). */
function layouts(): Record<string, Map<string, Uint8Array>> {
  const single = new Map([['model.safetensors', writeSafetensors([embed, q, norm, scalar, empty])]]);
  const index = {
    metadata: { total_size: 0 },
    weight_map: {
      [embed.name]: 'model-00001-of-00002.safetensors',
      [q.name]: 'model-00001-of-00002.safetensors',
      [norm.name]: 'model-00002-of-00002.safetensors',
      [scalar.name]: 'model-00002-of-00002.safetensors',
    },
  };
  const sharded = new Map([
    ['model.safetensors.index.json', new TextEncoder().encode(JSON.stringify(index))],
    ['model-00001-of-00002.safetensors', writeSafetensors([embed, q])],
    ['model-00002-of-00002.safetensors', writeSafetensors([norm, scalar])],
  ]);
  return { single, sharded };
}

/** A copy of a safetensors file with its header replaced (the length prefix is recomputed unless given). */
function withHeader(file: Uint8Array, edit: (h: Record<string, unknown>) => void, lengthOverride?: bigint): Uint8Array {
  const dv = new DataView(file.buffer, file.byteOffset);
  const n = Number(dv.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(file.subarray(8, 8 + n)));
  edit(header);
  const hb = new TextEncoder().encode(JSON.stringify(header));
  const data = file.subarray(8 + n);
  const out = new Uint8Array(8 + hb.length + data.length);
  new DataView(out.buffer).setBigUint64(0, lengthOverride ?? BigInt(hb.length), true);
  out.set(hb, 8);
  out.set(data, 8 + hb.length);
  return out;
}

type Backend = { name: string; make(files: Map<string, Uint8Array>): Promise<{ src: ModelSource; done(): Promise<void> }> };
const backends: Backend[] = [
  {
    name: 'FolderSource',
    async make(files) {
      const dir = await mkdtemp(join(tmpdir(), 'webdms-st-'));
      for (const [n, b] of files) await writeFile(join(dir, n), b);
      return { src: new FolderSource(dir), done: () => rm(dir, { recursive: true, force: true }) };
    },
  },
  {
    name: 'HttpSource',
    async make(files) {
      const srv: TestServer = await serveFiles(files);
      return { src: new HttpSource(srv.url), done: () => srv.close() };
    },
  },
];

function expectValues(got: Float32Array, t: TestTensor) {
  expect(got).toBeInstanceOf(Float32Array);
  expect(Array.from(got)).toEqual(Array.from(Float32Array.from(t.data as ArrayLike<number>)));
}

for (const backend of backends) {
  describe(`safetensors via ${backend.name}`, () => {
    for (const [layout, files] of Object.entries(layouts())) {
      describe(`${layout} layout`, () => {
        let src: ModelSource;
        let done: () => Promise<void>;
        let tensors: Map<string, TensorInfo>;
        beforeAll(async () => {
          ({ src, done } = await backend.make(files));
          tensors = await listTensors(src);
        });
        afterAll(() => done());

        it('lists every tensor with dtype, shape, file and absolute offsets', () => {
          const expected = layout === 'single' ? [embed, q, norm, scalar, empty] : [embed, q, norm, scalar];
          expect([...tensors.keys()].sort()).toEqual(expected.map((t) => t.name).sort());
          const e = tensors.get(embed.name)!;
          expect(e).toMatchObject({ dtype: 'BF16', shape: [7, 5], byteLength: 70 });
          expect(e.file).toBe(layout === 'single' ? 'model.safetensors' : 'model-00001-of-00002.safetensors');
          expect(tensors.get(q.name)).toMatchObject({ dtype: 'F16', shape: [3, 4], byteLength: 24 });
          expect(tensors.get(norm.name)).toMatchObject({ dtype: 'F32', shape: [5], byteLength: 20 });
          // The offset is absolute: the bytes there are the tensor's.
          const file = files.get(e.file)!;
          const u16 = new Uint16Array(file.slice(e.offset, e.offset + 4).buffer);
          expect(new Float32Array(new Uint32Array([u16[0] << 16, u16[1] << 16]).buffer)[0]).toBe(embed.data[0] as number);
        });

        it('reads F32, F16 and BF16 tensors as f32', async () => {
          expectValues(await readTensorF32(src, tensors.get(embed.name)!), embed);
          expectValues(await readTensorF32(src, tensors.get(q.name)!), q);
          expectValues(await readTensorF32(src, tensors.get(norm.name)!), norm);
          expectValues(await readTensorF32(src, tensors.get(scalar.name)!), scalar);
          if (layout === 'single') expect((await readTensorF32(src, tensors.get(empty.name)!)).length).toBe(0);
        });

        it('reads row slices of 2-D tensors', async () => {
          const info = tensors.get(embed.name)!;
          const all = Float32Array.from(embed.data as ArrayLike<number>);
          for (const [start, count] of [[0, 7], [2, 3], [6, 1], [4, 0]]) {
            expect(Array.from(await readTensorRows(src, info, start, count))).toEqual(Array.from(all.subarray(start * 5, (start + count) * 5)));
          }
          expect(Array.from(await readTensorRows(src, tensors.get(q.name)!, 1, 2))).toEqual(Array.from(q.data as Float32Array).slice(4, 12));
          await expect(readTensorRows(src, info, 5, 3)).rejects.toThrow(/rows \[5, 8\) outside .* 7 rows/);
          await expect(readTensorRows(src, info, -1, 1)).rejects.toThrow(RangeError);
          await expect(readTensorRows(src, tensors.get(norm.name)!, 0, 1)).rejects.toThrow(/not 2-D/);
        });
      });
    }

    describe('corrupt and unsupported files', () => {
      const good = writeSafetensors([embed, q]);
      const cases: [string, Map<string, Uint8Array>, RegExp][] = [
        ['a file shorter than the length prefix', new Map([['model.safetensors', good.slice(0, 5)]]), /5 bytes, too short/],
        ['a truncated header', new Map([['model.safetensors', good.slice(0, 40)]]), /header length \d+ is not sane \(file size 40/],
        ['an absurd header length', new Map([['model.safetensors', withHeader(good, () => {}, 1n << 40n)]]), /header length 1099511627776 is not sane/],
        ['a header that is not JSON', new Map([['model.safetensors', (() => { const b = good.slice(); b[8] = 0x7a; return b; })()]]), /header is not valid UTF-8 JSON/],
        ['a header that is a JSON list', new Map([['model.safetensors', (() => {
          const hb = new TextEncoder().encode('[1,2]   ');
          const b = new Uint8Array(8 + hb.length);
          new DataView(b.buffer).setBigUint64(0, BigInt(hb.length), true);
          b.set(hb, 8);
          return b;
        })()]]), /header is not a JSON object/],
        ['offsets past the end of the file', new Map([['model.safetensors', withHeader(good, (h) => {
          (h[q.name] as { data_offsets: number[] }).data_offsets = [70, 70 + 24 + 8];
          (h[q.name] as { shape: number[] }).shape = [4, 4];
        })]]), /"model\.layers\.0\.self_attn\.q_proj\.weight": data_offsets \[70, 102\] run past the end of the file \(data section is 94 bytes\)/],
        ['a file truncated in its data', new Map([['model.safetensors', good.slice(0, good.length - 1)]]), /q_proj\.weight": data_offsets \[70, 94\] run past the end/],
        ['a byte length that does not match the shape', new Map([['model.safetensors', withHeader(good, (h) => {
          (h[embed.name] as { shape: number[] }).shape = [7, 4];
        })]]), /"model\.embed_tokens\.weight": 70 bytes but shape \[7,4\] of BF16 needs 56/],
        ['an unsupported dtype', new Map([['model.safetensors', withHeader(good, (h) => {
          (h[q.name] as { dtype: string; shape: number[] }).dtype = 'I8';
        })]]), /tensor "model\.layers\.0\.self_attn\.q_proj\.weight" has unsupported dtype I8/],
        ['F64', new Map([['model.safetensors', writeSafetensors([{ name: 'w', dtype: 'F64', shape: [2], data: new Uint8Array(16) }])]]), /tensor "w" has unsupported dtype F64/],
        ['negative offsets', new Map([['model.safetensors', withHeader(good, (h) => {
          (h[q.name] as { data_offsets: number[] }).data_offsets = [-2, 22];
        })]]), /bad data_offsets \[-2,22\]/],
        ['a bad shape', new Map([['model.safetensors', withHeader(good, (h) => {
          (h[q.name] as { shape: unknown }).shape = [3, 'x'];
        })]]), /q_proj\.weight": bad shape \[3,"x"\]/],
        ['no weights at all', new Map([['config.json', new Uint8Array(2)]]), /neither model\.safetensors nor model\.safetensors\.index\.json found/],
        ['an index without weight_map', new Map([['model.safetensors.index.json', new TextEncoder().encode('{"metadata":{}}')]]), /missing "weight_map"/],
        ['an index that is not JSON', new Map([['model.safetensors.index.json', new TextEncoder().encode('{oops')]]), /model\.safetensors\.index\.json .*not valid JSON/],
        ['an index naming a missing shard', new Map([
          ['model.safetensors.index.json', new TextEncoder().encode(JSON.stringify({ weight_map: { a: 'shard-1.safetensors' } }))],
        ]), /shard-1\.safetensors/],
        ['an index naming a tensor its shard lacks', new Map([
          ['model.safetensors.index.json', new TextEncoder().encode(JSON.stringify({ weight_map: { [embed.name]: 's1.safetensors', ghost: 's1.safetensors' } }))],
          ['s1.safetensors', writeSafetensors([embed])],
        ]), /maps tensor "ghost" to s1\.safetensors, whose header does not contain it/],
        ['a tensor in two shards', new Map([
          ['model.safetensors.index.json', new TextEncoder().encode(JSON.stringify({ weight_map: { [embed.name]: 's1.safetensors', [q.name]: 's2.safetensors' } }))],
          ['s1.safetensors', writeSafetensors([embed])],
          ['s2.safetensors', writeSafetensors([q, embed])],
        ]), /"model\.embed_tokens\.weight" appears in two shards: s1\.safetensors and s2\.safetensors/],
      ];
      for (const [what, files, pattern] of cases) {
        it(`rejects ${what}`, async () => {
          const { src, done } = await backend.make(files);
          try {
            await expect(listTensors(src)).rejects.toThrow(pattern);
          } finally {
            await done();
          }
        });
      }
    });
  });
}

describe('safetensors over HTTP reads only what it needs', () => {
  it('reads headers and a row slice with Range requests, never the whole file', async () => {
    const big: TestTensor = { name: 'model.embed_tokens.weight', dtype: 'F16', shape: [1000, 64], data: vals(64000, 3) };
    const files = new Map([['model.safetensors', writeSafetensors([big])]]);
    const srv = await serveFiles(files);
    try {
      const src = new HttpSource(srv.url);
      const info = (await listTensors(src)).get(big.name)!;
      const rows = await readTensorRows(src, info, 500, 2);
      expect(Array.from(rows)).toEqual(Array.from((big.data as Float32Array).subarray(500 * 64, 502 * 64)));
      const gets = srv.log.filter((l) => l.method === 'GET');
      expect(gets.every((l) => l.range !== undefined)).toBe(true);
      const rowStart = info.offset + 500 * 128;
      expect(gets.at(-1)!.range).toBe(`bytes=${rowStart}-${rowStart + 256 - 1}`);
    } finally {
      await srv.close();
    }
  });
});
