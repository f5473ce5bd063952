/**
 * The engine's tuning knobs, set by name (CLI flags of `dms bench`, URL parameters of the benchmark page),
 * for measuring the alternatives on a device:
 *   flush N            dispatches per early submit (0 = one submit per step)
 *   mv RxL[xU] | off   decode matvec: rows per workgroup x lanes (x groups per lane step); off = the tiled kernel and separate
 *                      norm, add and activation dispatches
 *   gemm TMxTNxMT[xNT]|off  prefill GEMM tile (tokens x rows, tokens (x rows) per thread); off = the lane-split kernel
 *   decode KB | off    decode attention: keys per group step; off = the general attention kernel
 *   decode-split MxW   decode attention: least keys per split x workgroups aimed for
 * Returns the values in use (the benchmark's JSON `tuning`).
 */
import { encoderTuning } from '../gpu/encoder';
import { decodeTuning } from '../kernels/attention';
import { linearTuning } from '../kernels/linear';
import { splitTuning } from '../kv/slot-cache';

export class TuningError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TuningError';
  }
}

export interface TuningInUse {
  flushEvery: number;
  mv: string;
  gemm: string;
  decode: number | 'off';
  decodeSplit: string;
}

/** The knobs' names: `dms bench` / `dms check` flags and bench.html parameters. */
export const TUNING_PARAMS = ['flush', 'mv', 'gemm', 'decode', 'decode-split'] as const;

export function applyTuning(get: (name: string) => string | undefined): TuningInUse {
  // n values joined by x, or n + 1 where the last is optional.
  const ints = (name: string, n: number, optional = 0): number[] | 'off' | undefined => {
    const v = get(name);
    if (v === undefined || v === 'off') return v;
    const parts = v.split('x').map(Number);
    if (parts.length < n || parts.length > n + optional || parts.some((x) => !Number.isInteger(x) || x < (n === 1 ? 0 : 1))) {
      throw new TuningError(`${name} must be ${n === 1 ? 'an integer >= 0' : `${n} positive integers joined by x`}${name === 'flush' ? '' : ', or off'}, got "${v}"`);
    }
    return parts;
  };
  const flush = ints('flush', 1);
  if (flush === 'off') throw new TuningError('flush must be an integer >= 0 (0 = one submit per step)');
  if (flush) encoderTuning.flushEvery = flush[0];
  const mv = ints('mv', 2, 1);
  if (mv === 'off') linearTuning.mv = false;
  else if (mv) [linearTuning.mvRows, linearTuning.mvLanes, linearTuning.mvUnroll] = [mv[0], mv[1], mv[2] ?? 1];
  const gemm = ints('gemm', 3, 1);
  if (gemm === 'off') linearTuning.gemm.minTokens = 0;
  else if (gemm) {
    const [tm, tn, mt, nt = 4] = gemm;
    if (tm % mt || mt % 4 || tn % nt || nt % 4 || (tm / mt) * (tn / nt) > 256) {
      throw new TuningError('gemm TMxTNxMT[xNT]: MT and NT multiples of 4 dividing TM and TN, (TM/MT) x (TN/NT) <= 256 threads');
    }
    linearTuning.gemm = { ...linearTuning.gemm, tm, tn, mt, nt };
  }
  const decode = ints('decode', 1);
  if (decode === 'off') decodeTuning.enabled = false;
  else if (decode) {
    if (!(decode[0] >= 1 && decode[0] <= 16)) throw new TuningError('decode must be 1..16 keys per group step, or off');
    decodeTuning.keysPerStep = decode[0];
  }
  const split = ints('decode-split', 2);
  if (split === 'off') throw new TuningError('decode-split must be MINKEYSxWORKGROUPS');
  if (split) [splitTuning.decodeMinSplitKeys, splitTuning.decodeTargetWorkgroups] = split;
  return {
    flushEvery: encoderTuning.flushEvery,
    mv: linearTuning.mv ? `${linearTuning.mvRows}x${linearTuning.mvLanes}x${linearTuning.mvUnroll}` : 'off',
    gemm: linearTuning.gemm.minTokens > 0 ? `${linearTuning.gemm.tm}x${linearTuning.gemm.tn}x${linearTuning.gemm.mt}x${linearTuning.gemm.nt}` : 'off',
    decode: decodeTuning.enabled ? decodeTuning.keysPerStep : 'off',
    decodeSplit: `${splitTuning.decodeMinSplitKeys}x${splitTuning.decodeTargetWorkgroups}`,
  };
}
