/** The page's wording helpers (app/format.ts): notices without raw URLs, "1 token". */
import { describe, expect, it } from 'vitest';
import { plural, readableNotice } from '../../app/format';

describe('wording', () => {
  it('an offline notice says so in words, with no URL', () => {
    const raw = 'could not check for updates: You are offline: cannot download https://huggingface.co/Qwen/Qwen3-0.6B/resolve/main/config.json (size).';
    const t = readableNotice(raw);
    expect(t).toMatch(/^You are offline/);
    expect(t).not.toMatch(/https?:/);
    expect(readableNotice('could not check for updates: HTTP 500', false)).toMatch(/^You are offline/);
  });
  it('other notices keep their words but show hosts instead of URLs', () => {
    expect(readableNotice('could not check for updates: HTTP 500 server error for https://huggingface.co/a/b/resolve/main/config.json (size)')).toBe(
      'could not check for updates: HTTP 500 server error for huggingface.co (size)',
    );
  });
  it('counts agree with their nouns', () => {
    expect(plural(1, 'token')).toBe('1 token');
    expect(plural(2, 'token')).toBe('2 tokens');
  });
});
