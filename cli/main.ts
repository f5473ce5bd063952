/**
 * The WebDMS CLI: `npm run -s dms -- <command> ...`. Runs the same engine as the browser, on Node's
 * WebGPU (Dawn). Errors go to stderr with exit code 1 (2 for usage errors).
 */
import { generateCommand } from './generate';
import { perplexityCommand } from './perplexity';
import { kvQualityCommand } from './kv-quality';
import { benchCommand } from './bench';
import { checkCommand } from './check';
import { convertCommand } from './convert';
import { hyperscaleCommand } from './hyperscale';
import { UsageError } from './args';

const USAGE = `usage: npm run -s dms -- <command> [options]

commands:
  generate --model <folder | base URL | repo id | default> (--prompt TEXT [--chat] | --prompt-ids 1,2,3 | --messages chat.json)
           [--max-new-tokens N] [--temperature T] [--top-p P] [--top-k K] [--seed S]
           [--weights f32|f16|q8|q4] [--kv full|dms|window|tova|h2o] [--kv-budget N] [--kv-dtype f16|f32|q8|q4] [--json]
           [--chains W [--vote]] [--memory MB|low|medium|high]   (parallel chains; --memory lets the planner pick W, length, kv)
  hyperscale --model <...> [--tasks add,mul,vartrack | file.jsonl] [--n N] [--task-seed S] [--widths 1,2,4] [--lengths 128,256]
           [--kv full,dms,window,tova,h2o] [--kv-budget N] [--kv-dtype f16|f32|q8|q4] [--temperature T] [--top-p P] [--top-k K] [--seed S] [--out file.json] [--json]
  bench (--shape tiny|qwen3-0.6b|qwen3-1.7b|qwen3-4b|qwen3-8b | --model <folder | URL | repo id> [--gpu-memory MB] [--warmup S])
        --weights q4|q8|f16|f32 --context 1024,4096 --kv full,dms [--kv-dtype f16,f32,q8,q4]
        [--dms-evict-rate 0.875] [--dms-window 256] [--dms-rule nvidia|fastdms] [--steps 16] [--prefill 512] [--ttft 2048] [--json]
        [--flush N] [--mv RxL|off] [--gemm TMxTNxMT|off] [--decode KB|off] [--decode-split MINKEYSxWORKGROUPS]
  check [--weights q4,q8,f16,f32] [--kv-dtype f16,q8,q4] [--prompt 80,400] [--steps 16] [--json] [the tuning flags of bench]
        (the fast paths against the plain ones on this device: fused matvecs, decode attention, GEMM, step plans)
  convert --model <folder | base URL | repo id> --weights q4|q8|f16|f32 --out <folder> [--shard-mb 64] [--json]
           (pre-quantized shards + manifest; generate/Engine.load read the folder or its URL directly)
  perplexity --model <...> --file <text file> [--max-tokens N] [--kv ...] [--kv-budget N] [--kv-dtype f16|f32|q8|q4] [--weights ...] [--step N] [--json]
  kv-quality --model <...> --file <text file> [--max-tokens 1024] [--kv dms] [--kv-budget N] [--kv-dtype f16,q8,q4] [--prompt 64] [--greedy 256] [--json]
           (each K/V storage type against the first: perplexity, per-token KL, argmax and greedy agreement, bytes per token)

  A --model given as a URL or repo id is downloaded with retries (5 attempts, backoff) and progress on stderr;
  --timeout S (generate, perplexity, convert, hyperscale; default 30) gives up on a request that gets no
  response, or a body that sends no data, for S seconds, and retries it.
`;

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'generate':
      return generateCommand(rest);
    case 'perplexity':
      return perplexityCommand(rest);
    case 'kv-quality':
      return kvQualityCommand(rest);
    case 'bench':
      return benchCommand(rest);
    case 'check':
      return checkCommand(rest);
    case 'convert':
      return convertCommand(rest);
    case 'hyperscale':
      return hyperscaleCommand(rest);
    case undefined:
    case '--help':
    case 'help':
      process.stdout.write(USAGE);
      return;
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

main(process.argv.slice(2)).then(
  () => process.exit(0),
  (err: unknown) => {
    const e = err instanceof Error ? err : new Error(String(err));
    process.stderr.write(`error: ${e.message}\n`);
    if (e instanceof UsageError) process.stderr.write(USAGE);
    process.exit(e instanceof UsageError ? 2 : 1);
  },
);
