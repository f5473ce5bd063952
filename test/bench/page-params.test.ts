/** bench.html's URL parameters (worker/bench/browser-bench.ts): the defaults of `dms bench --shape`, and the same refusals. */
import { describe, expect, it } from 'vitest';
import { BenchParamError, parseBenchParams } from '../../worker/bench/browser-bench';

const parse = (q: string) => parseBenchParams(new URLSearchParams(q));

describe('bench page parameters', () => {
  it('defaults as dms bench: tiny q4 at 1024, full and dms, K/V f16, 16 steps, prefill 64 and no TTFT for tiny', () => {
    expect(parse('')).toEqual({
      shape: 'tiny', weights: 'q4', contexts: [1024], policies: ['full', 'dms'], kvDtypes: ['f16'],
      steps: 16, prefill: 64, ttft: 0, evictRate: 0.875, window: 256, probe: false,
    });
  });

  it('a real shape prefills 512-token chunks and measures a 2048-token TTFT unless told otherwise', () => {
    const p = parse('shape=qwen3-8b&context=4096,32768&kv=dms&kv-dtype=f16,f32&steps=32&ttft=0&probe=1');
    expect(p).toMatchObject({ shape: 'qwen3-8b', contexts: [4096, 32768], policies: ['dms'], kvDtypes: ['f16', 'f32'], steps: 32, prefill: 512, ttft: 0, probe: true });
    expect(parse('shape=qwen3-0.6b')).toMatchObject({ prefill: 512, ttft: 2048 });
  });

  it.each([
    ['shape=qwen3-9b', /shape must be one of tiny, qwen3-0\.6b/],
    ['weights=q3', /weights must be one of f32, f16, q8, q4/],
    ['context=1024,0', /context: "0" is not a token count/],
    ['kv=full,h2o', /kv must be full or dms/],
    ['kv-dtype=bf16', /kv-dtype must be f16 or f32/],
    ['steps=0', /steps must be an integer >= 1/],
    ['prefill=1.5', /prefill must be an integer >= 1/],
    ['dms-evict-rate=1', /dms-evict-rate must be a number in \[0, 0\.999\]/],
  ])('refuses %s', (q, message) => {
    expect(() => parse(q)).toThrow(BenchParamError);
    expect(() => parse(q)).toThrow(message);
  });
});
