/**
 * Resident memory of a Chromium instance, read from /proc (Linux): the browser process (found by its
 * --user-data-dir) and every process below it, grouped by Chromium's --type= (gpu-process: Dawn and
 * SwiftShader, where the "GPU" buffers live; renderer: the page and its Web Worker, i.e. the engine's JS;
 * utility: storage, network; browser: IndexedDB's backend lives here too). Sampled on a timer; peaks are
 * kept per mark so each phase of a test gets its own.
 */
import { readFileSync, readdirSync } from 'node:fs';

interface Proc {
  pid: number;
  ppid: number;
  type: string;
  rssBytes: number;
  cmd: string;
}

/** Proportional set size (shared pages split among their users), so a sum over processes does not double count. */
function pssBytes(pid: number): number {
  try {
    return Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
}

function readProcs(): Proc[] {
  const out: Proc[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const status = readFileSync(`/proc/${d}/status`, 'utf8');
      const ppid = Number(/^PPid:\s+(\d+)/m.exec(status)?.[1] ?? -1);
      const rss = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024;
      // Chromium rewrites its children's command lines into one space-separated string: search, do not split.
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8');
      const type = /(?:^|[\0 ])--type=([\w-]+)/.exec(cmd)?.[1] ?? 'browser';
      out.push({ pid: Number(d), ppid, type, rssBytes: rss, cmd });
    } catch {
      /* the process ended while being read */
    }
  }
  return out;
}

function browserTree(profileDir: string): Proc[] {
  const procs = readProcs();
  const flag = `--user-data-dir=${profileDir}`;
  const roots = procs.filter((p) => p.type === 'browser' && p.cmd.split('\0').includes(flag));
  const inTree = new Set(roots.map((p) => p.pid));
  let grew = true;
  while (grew) {
    grew = false;
    for (const p of procs) {
      if (!inTree.has(p.pid) && inTree.has(p.ppid)) {
        inTree.add(p.pid);
        grew = true;
      }
    }
  }
  return procs.filter((p) => inTree.has(p.pid));
}

/** RSS in bytes per Chromium process type (summed over its processes), `total` (RSS sum, counts shared pages once per process) and `totalPss`. */
export type MemorySnapshot = Record<string, number> & { total: number; totalPss: number };

export interface MemoryPeaks {
  /** Peak RSS (bytes) of each process type (summed over processes of that type) and of the whole tree. */
  peak: MemorySnapshot;
  samples: number;
}

export class ChromiumMemory {
  private timer: NodeJS.Timeout | null = null;
  private current: { name: string; peak: MemorySnapshot; samples: number } | null = null;
  readonly phases: Record<string, MemoryPeaks> = {};
  /** False when /proc cannot be read or no browser with that profile was found. */
  found = false;

  constructor(private readonly profileDir: string, private readonly everyMs = 500) {}

  snapshot(): MemorySnapshot {
    const snap: MemorySnapshot = { total: 0, totalPss: 0 } as MemorySnapshot;
    let procs: Proc[] = [];
    try {
      procs = browserTree(this.profileDir);
    } catch {
      return snap;
    }
    if (procs.length) this.found = true;
    for (const p of procs) {
      snap[p.type] = (snap[p.type] ?? 0) + p.rssBytes;
      snap.total += p.rssBytes;
      snap.totalPss += pssBytes(p.pid);
    }
    return snap;
  }

  private sample(): void {
    if (!this.current) return;
    const s = this.snapshot();
    this.current.samples++;
    for (const [k, v] of Object.entries(s)) this.current.peak[k] = Math.max(this.current.peak[k] ?? 0, v);
  }

  /** Ends the running phase (if any) and starts collecting peaks for `name`. */
  mark(name: string): void {
    this.end();
    this.current = { name, peak: { total: 0, totalPss: 0 } as MemorySnapshot, samples: 0 };
    this.sample();
    this.timer ??= setInterval(() => this.sample(), this.everyMs);
  }

  end(): void {
    if (!this.current) return;
    this.sample();
    this.phases[this.current.name] = { peak: this.current.peak, samples: this.current.samples };
    this.current = null;
  }

  stop(): void {
    this.end();
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
