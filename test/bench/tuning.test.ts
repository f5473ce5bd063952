/** The tuning knobs by name (worker/bench/tuning.ts): what `dms bench` flags and bench.html parameters set. */
import { afterEach, describe, expect, it } from 'vitest';
import { applyTuning, TuningError } from '../../worker/bench/tuning';
import { linearTuning } from '../../worker/kernels/linear';

const savedLinear = { ...linearTuning };
const apply = (knobs: Record<string, string>) => applyTuning((name) => knobs[name]);

describe('tuning knobs', () => {
  afterEach(() => void Object.assign(linearTuning, savedLinear));

  it('mv RxL[xU] or off', () => {
    expect(apply({ mv: '8x256' }).mv).toBe('8x256x1');
    expect(linearTuning).toMatchObject({ mv: true, mvRows: 8, mvLanes: 256, mvUnroll: 1 });
    expect(apply({ mv: 'off' }).mv).toBe('off');
    expect(() => apply({ mv: '8x0' })).toThrow(TuningError);
  });
});
