/**
 * How long an operator command takes to start and finish, against a bare
 * Node start (issue 17): `bin/riskwatch check-config`, `status` and `silence
 * list` on a small config and state file, each run alternating with
 * `node -e 0`, so that the machine's drift cancels out; the figure is the
 * median of each pair's ratio. bin/riskwatch turns Node's compile cache on,
 * so the first run of each fills it and is left out, as a user's second and
 * later commands are.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const REPO = path.resolve(import.meta.dirname, '..');
const BIN = path.join(REPO, 'bin', 'riskwatch');
const RUNS = 15;

export interface StartupResult {
  readonly bareMs: number;
  readonly commands: Record<string, { ms: number; ratio: number; peakRssMb: number }>;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

/** Wall time and peak RSS of one run, through GNU time's %M when it is installed, else wall time only. */
function timed(command: string, args: readonly string[]): { ms: number; rssMb: number } {
  const started = performance.now();
  const result = spawnSync('/usr/bin/time', ['-f', '%M', command, ...args], { encoding: 'utf8', env: process.env });
  const ms = performance.now() - started;
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} exited ${result.status}: ${result.stderr}`);
  const kb = Number(result.stderr.trim().split('\n').at(-1));
  return { ms, rssMb: Number.isFinite(kb) ? kb / 1024 : NaN };
}

export async function measureStartup(): Promise<StartupResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rw-bench-startup-'));
  try {
    const config = path.join(dir, 'riskwatch.yaml');
    fs.writeFileSync(
      config,
      `cloudflare:\n  api_token: bench\naccounts:\n  - id: ${'b'.repeat(32)}\n    name: bench\nstate:\n  sqlite: ./state.db\nsinks:\n  - name: console\n    type: console\n`,
    );
    execFileSync(BIN, ['silence', 'add', '--user', 'bench@example.com', '--for', '1h', '--reason', 'bench', '--config', config]);
    const node = path.join(REPO, 'node_modules', 'node', 'bin', 'node');
    const bare = fs.existsSync(node) ? node : process.execPath;
    const commands: Record<string, string[]> = {
      'check-config': ['check-config', '--config', config],
      status: ['status', '--config', config],
      'silence list': ['silence', 'list', '--config', config],
    };
    const bareMs: number[] = [];
    const result: StartupResult['commands'] = {};
    for (const [name, args] of Object.entries(commands)) {
      timed(BIN, args); // fills the compile cache
      const ratios: number[] = [];
      const ms: number[] = [];
      const rss: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        const base = timed(bare, ['-e', '0']).ms;
        const run = timed(BIN, args);
        bareMs.push(base);
        ms.push(run.ms);
        rss.push(run.rssMb);
        ratios.push(run.ms / base);
      }
      result[name] = { ms: median(ms), ratio: median(ratios), peakRssMb: median(rss) };
    }
    return { bareMs: median(bareMs), commands: result };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
