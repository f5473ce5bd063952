/** Rotary position embedding frequencies, as Hugging Face computes `inv_freq`. */
import type { ModelConfig } from '../model/types';

/**
 * inv_freq[i] = theta^(-2i / headDim) for i < headDim / 2 (rotate-half RoPE pairs channel i with i + headDim/2),
 * then, when `scaling` is given, Llama 3's rule (rope_type "llama3"): with wavelength λ = 2π / inv_freq,
 * L = original_max_position_embeddings, λ_hi = L / high_freq_factor and λ_lo = L / low_freq_factor:
 *   λ < λ_hi            → unchanged (high frequencies)
 *   λ > λ_lo            → inv_freq / factor (low frequencies)
 *   otherwise           → (1 − s) · inv_freq / factor + s · inv_freq, s = (L / λ − low_freq_factor) / (high_freq_factor − low_freq_factor)
 * Computed in f64 and rounded once to f32.
 */
export function ropeInvFreq(headDim: number, theta: number, scaling: ModelConfig['ropeScaling']): Float32Array {
  if (!Number.isInteger(headDim) || headDim <= 0 || headDim % 2) throw new Error(`ropeInvFreq: head dim ${headDim} must be a positive even integer`);
  if (!(theta > 0)) throw new Error(`ropeInvFreq: theta ${theta} must be positive`);
  const half = headDim / 2;
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    let inv = 1 / theta ** ((2 * i) / headDim);
    if (scaling) {
      const { factor, lowFreqFactor: lo, highFreqFactor: hi, originalMaxPositionEmbeddings: L } = scaling;
      const wavelen = (2 * Math.PI) / inv;
      if (wavelen > L / lo) {
        inv = inv / factor;
      } else if (wavelen >= L / hi) {
        // Between the two wavelengths; hi == lo would leave no such band (both bounds coincide).
        const s = hi === lo ? 1 : (L / wavelen - lo) / (hi - lo);
        inv = ((1 - s) * inv) / factor + s * inv;
      }
    }
    out[i] = inv;
  }
  return out;
}
