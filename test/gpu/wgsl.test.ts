/** WGSL assembly (worker/gpu/wgsl.ts): conditional blocks, shared pieces included by name, uniform blocks declared once. */
import { describe, expect, it } from 'vitest';
import f16Round from '../../shaders/f16_round.wgsl';
import { include, paramLayout, specialize } from '../../worker/gpu/wgsl';

describe('specialize', () => {
  it('keeps the right branches, nested', () => {
    const src = ['a', '// #if X', 'b', '  // #if Y', 'c', '// #else', 'd', '// #endif', '// #else', 'e', '// #endif', 'f'].join('\n');
    expect(specialize(src, { X: true, Y: true })).toBe('a\nb\nc\nf');
    expect(specialize(src, { X: true, Y: false })).toBe('a\nb\nd\nf');
    expect(specialize(src, { X: false, Y: true })).toBe('a\ne\nf');
    expect(() => specialize(src, { X: true })).toThrow(/Y/);
    expect(() => specialize('// #if X\na', { X: true })).toThrow(/unterminated/);
  });
});

describe('include', () => {
  it('puts the shared piece in place of the directive line, and refuses an unknown one', () => {
    expect(include('a\n  // #include f16_round.wgsl\nb')).toBe(`a\n${f16Round}\nb`);
    expect(include('a\n// #if X\nb\n// #endif')).toBe('a\n// #if X\nb\n// #endif');
    expect(() => include('// #include nothing.wgsl')).toThrow(/nothing\.wgsl/);
  });
});

describe('paramLayout', () => {
  const layout = paramLayout({ T: 'u32', scale: 'f32', shift: 'i32', cap: 'u32', w: 'u32' });

  it('writes the WGSL struct in field order, padded to whole 16-byte rows', () => {
    expect(layout.struct).toBe('struct Params {\n  T: u32, scale: f32, shift: i32, cap: u32,\n  w: u32, _pad0: u32, _pad1: u32, _pad2: u32,\n}\n');
    expect(layout.fields).toEqual(['T', 'scale', 'shift', 'cap', 'w']);
  });

  it('packs values in the same order, with f32 and i32 bits', () => {
    const words = layout.pack({ w: 7, cap: 0xffffffff, shift: -2, scale: 0.5, T: 3 });
    expect(Array.from(words)).toEqual([3, 0x3f000000, 0xfffffffe, 0xffffffff, 7, 0, 0, 0]);
  });
});
