import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Sha256, sha256Hex } from '../../worker/store/sha256';
import { noise } from './hub-server';

const enc = (s: string) => new TextEncoder().encode(s);
const nodeSha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('Sha256 (incremental, pure TypeScript)', () => {
  it('matches the FIPS 180-4 test vectors', () => {
    expect(new Sha256().update(enc('')).hex()).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(new Sha256().update(enc('abc')).hex()).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(new Sha256().update(enc('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq')).hex()).toBe(
      '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1');
  });

  it('agrees with node:crypto at every padding boundary', () => {
    for (const n of [1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000]) {
      const b = noise(n, n + 1);
      expect(new Sha256().update(b).hex(), `length ${n}`).toBe(nodeSha(b));
    }
  });

  it('gives the same digest however the input is split', () => {
    const b = noise(300_001, 7);
    const want = nodeSha(b);
    for (const parts of [[0, 1, 2, 63, 64, 65, 1000], [300_000], [7, 77, 777, 7777, 77777]]) {
      const h = new Sha256();
      let pos = 0;
      for (const p of parts) {
        const end = Math.min(b.length, pos + p);
        h.update(b.subarray(pos, end));
        pos = end;
      }
      h.update(b.subarray(pos));
      expect(h.hex()).toBe(want);
    }
  });

  it('sha256Hex (WebCrypto or fallback) agrees', async () => {
    const b = noise(12345, 3);
    expect(await sha256Hex(b)).toBe(nodeSha(b));
    expect(await sha256Hex(b.subarray(5, 1005))).toBe(nodeSha(b.subarray(5, 1005)));
  });

  it('refuses update after digest', () => {
    const h = new Sha256().update(enc('x'));
    h.digest();
    expect(() => h.update(enc('y'))).toThrow(/after digest/);
  });
});
