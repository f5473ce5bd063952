/**
 * `dms bench --model`: a checkpoint loaded through Engine.load (streamed and quantized, or converted),
 * its load reported, then decode timed as the random-weight bench does; and the two random-checkpoint
 * writers (scripts/make-random-checkpoint.mjs / .py) writing the same layout.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = new URL('../../', import.meta.url).pathname;
const DMS = join(ROOT, 'test/fixtures/golden/qwen3-dms');

function run(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: ROOT, timeout: 300_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}
const dms = (...args: string[]) => run('node', ['scripts/dms.mjs', ...args]);

/** A Python that can run make-random-checkpoint.py (numpy or torch), or null. */
function python(): string | null {
  for (const p of ['python3', '/usr/bin/python3']) {
    try {
      execFileSync(p, ['-c', 'import importlib.util as u, sys; sys.exit(0 if u.find_spec("numpy") or u.find_spec("torch") else 1)'], { stdio: 'ignore' });
      return p;
    } catch {
      // next
    }
  }
  return null;
}

describe('dms bench --model', () => {
  it('loads a checkpoint folder, reports the load, and times decode under full and dms', async () => {
    const r = await dms('bench', '--model', DMS, '--weights', 'q4', '--context', '96', '--kv', 'full,dms', '--steps', '2', '--prefill', '8', '--warmup', '0', '--json');
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    const { load, rows } = out;
    expect(out.adapter).toMatch(/\w/);
    expect(out.bandwidthGBps).toBeGreaterThan(0);
    expect(out.warmup.seconds).toBe(0);
    expect(out.warmup.firstBandwidthGBps).toBeGreaterThan(0);
    expect(out.warmup.probesGBps).toEqual([out.bandwidthGBps]);
    const checkpoint = statSync(join(DMS, 'model.safetensors')).size;
    expect(load.model).toBe(DMS);
    expect(load.weights).toBe('q4');
    expect(load.fromConverted).toBe(false);
    expect(load.ms).toBeGreaterThan(0);
    // Every tensor byte, plus config.json, generation_config.json and the tokenizer files.
    expect(load.bytesRead).toBeGreaterThan(checkpoint - 1024);
    expect(load.readGBps).toBeCloseTo(load.bytesRead / load.ms / 1e6, 6);
    expect(load.gpuWeightBytes).toBeGreaterThan(0);
    expect(load.gpuWeightBytes).toBeLessThan(checkpoint); // q4 of a bf16 checkpoint
    expect(load.maxRssBytes).toBeGreaterThanOrEqual(load.maxRssBeforeBytes);
    expect(load.maxRssBeforeBytes).toBeGreaterThan(0);
    for (const k of ['rss', 'heapUsed', 'arrayBuffers', 'external']) expect(load.peak[k]).toBeGreaterThanOrEqual(load.before[k]);
    expect(load.samples).toBeGreaterThanOrEqual(1);
    expect(Date.parse(load.endedAt)).toBeGreaterThan(Date.now() - 300_000);
    // The checkpoint's own DMS configuration (window 4, CR 4).
    expect(load.dms).toEqual({ windowSize: 4, cr: 4, fromCheckpoint: true });
    expect(rows).toHaveLength(2);
    const [full, evict] = rows;
    for (const row of rows) {
      expect(row.shape).toBe('qwen3-dms');
      expect(row.weights).toBe('q4');
      expect(row.context).toBe(96);
      expect(row.weightBytes).toBe(load.gpuWeightBytes);
      expect(row.decodeTokensPerSecond).toBeGreaterThan(0);
      expect(row.prefillTokensPerSecond).toBeGreaterThan(0);
      expect(row.fractionOfBound).toBeGreaterThan(0);
      expect(row.dispatchesPerToken).toBeGreaterThan(0);
    }
    expect([full.kv, evict.kv]).toEqual(['full', 'dms']);
    // 2 layers x 2 KV heads; full keeps all 96+ tokens, dms the window (5) and 1/4 of the rest.
    expect(full.residentTokens).toBeGreaterThanOrEqual(96 * 2 * 2);
    expect(evict.residentTokens).toBeLessThan(full.residentTokens / 2);
  });

  it('loads the converted form and prints the load lines before the rows', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'bench-model-')), 'q8');
    const c = await dms('convert', '--model', DMS, '--weights', 'q8', '--out', dir);
    expect(c.code, c.stderr).toBe(0);
    const r = await dms('bench', '--model', dir, '--context', '64', '--kv', 'dms', '--steps', '2', '--prefill', '8', '--warmup', '0.2');
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^load .*: q8 from the converted form \(webdms-manifest\.json\) in [\d.]+ s, [\d.]+ [MG]B read \([\d.]+ GB\/s\), weights on the GPU [\d.]+ [MG]B; ended \d{4}-.*Z$/);
    expect(lines[1]).toMatch(/^load memory: peak RSS [\d.]+ [MG]B \(maxRSS; [\d.]+ [MG]B before the load\), JS arrayBuffers peak [\d.]+ MB .*heap used peak [\d.]+ MB/);
    expect(lines[2]).toMatch(/^dms rows: window 4, CR 4\.00 \(the checkpoint's DMS configuration\)$/);
    expect(lines[3]).toMatch(/^GPU warm-up: 0.2 s of copies; copy bandwidth [\d.]+ GB\/s right after the load, ([\d.]+) GB\/s after \(best of [\d.]+, [\d.]+, [\d.]+\)$/);
    expect(lines[4]).toMatch(/^q8 q8 ctx 64 dms: decode [\d.]+ tok\/s/);
    // A converted folder fixes the format.
    const wrong = await dms('bench', '--model', dir, '--weights', 'q4', '--context', '64');
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/converted to q8/);
  });

  it('refuses --model with --shape or --gemv, and --warmup or --gpu-memory without it', async () => {
    for (const args of [['--model', DMS, '--shape', 'tiny'], ['--model', DMS, '--gemv'], ['--shape', 'tiny', '--warmup', '1'], ['--gpu-memory', '100']]) {
      const r = await dms('bench', ...args);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/--model/);
    }
  });
});

describe('make-random-checkpoint .py and .mjs', () => {
  const py = python();
  it.skipIf(!py)('write the same files, headers and index', async () => {
    const shape = JSON.stringify({
      architectures: ['Qwen3ForCausalLMDMS'], model_type: 'qwen3', hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2,
      num_attention_heads: 4, num_key_value_heads: 2, head_dim: 32, vocab_size: 300, max_position_embeddings: 1024, rope_theta: 1000000,
      rope_scaling: null, rms_norm_eps: 1e-6, tie_word_embeddings: false, hidden_act: 'silu', attention_bias: false, bos_token_id: 1,
      eos_token_id: 2, dms_window_size: 8, dms_alpha_scale: 100, dms_initial_alpha_offset: 5, dms_cr: 8,
    });
    const base = mkdtempSync(join(tmpdir(), 'random-ckpt-'));
    const [a, b] = [join(base, 'mjs'), join(base, 'py')];
    const m = await run('node', ['scripts/make-random-checkpoint.mjs', '--out', a, '--shape', shape, '--shard-mb', '0.05']);
    expect(m.code, m.stderr).toBe(0);
    const p = await run(py!, ['scripts/make-random-checkpoint.py', '--out', b, '--shape', shape, '--shard-mb', '0.05']);
    expect(p.code, p.stderr).toBe(0);
    const files = readdirSync(a).sort();
    expect(readdirSync(b).sort()).toEqual(files);
    expect(files.filter((f) => f.endsWith('.safetensors')).length).toBeGreaterThan(1);
    const json = (d: string, f: string) => JSON.parse(readFileSync(join(d, f), 'utf8'));
    expect(json(b, 'config.json')).toEqual(json(a, 'config.json'));
    expect(json(b, 'model.safetensors.index.json')).toEqual(json(a, 'model.safetensors.index.json'));
    for (const f of files.filter((f) => f.endsWith('.safetensors'))) {
      const [x, y] = [readFileSync(join(a, f)), readFileSync(join(b, f))];
      expect(y.length).toBe(x.length);
      const n = Number(x.readBigUInt64LE(0));
      expect(y.subarray(0, 8 + n).equals(x.subarray(0, 8 + n))).toBe(true);
    }
    // Both load and generate (random values, so only that they run).
    for (const d of [a, b]) {
      const g = await dms('generate', '--model', d, '--prompt-ids', '1,2,3', '--max-new-tokens', '2', '--json');
      expect(g.code, g.stderr).toBe(0);
      expect(JSON.parse(g.stdout).generated).toHaveLength(2);
    }
  });
});
