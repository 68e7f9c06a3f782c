/**
 * How long an operator command takes to start and finish, against a bare
 * Node start (issue 17): `bin/riskwatch check-config`, `status` and `silence
 * list` on a small config and state file, each run alternating with
 * `node -e 0`, so that the machine's drift cancels out; the figure is the
 * median of each pair's ratio. Each command is measured two ways: from a
 * clone (the repo's bin/riskwatch, on the TypeScript sources) and as shipped
 * (an app laid out as the Docker image's /app: bin/ and dist/ as `npm run
 * build` bundles it, built once here).
 * bin/riskwatch turns Node's compile cache on, so the first run of each fills
 * it and is left out, as a user's second and later commands are.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { median } from './stats.ts';

const REPO = path.resolve(import.meta.dirname, '..');
const BIN = path.join(REPO, 'bin', 'riskwatch');
const RUNS = 15;

export interface CommandStartup {
  readonly ms: number;
  readonly ratio: number;
  readonly peakRssMb: number;
}

export interface StartupResult {
  readonly bareMs: number;
  /** From a clone: bin/riskwatch on the sources. */
  readonly commands: Record<string, CommandStartup>;
  /** As shipped: bin/riskwatch on the bundle (dist/main.mjs), as the Docker image runs it. */
  readonly shipped: Record<string, CommandStartup>;
}

/** Wall time and peak RSS of one run, through GNU time's %M when it is installed, else wall time only. */
function timed(command: string, args: readonly string[]): { ms: number; rssMb: number } {
  const started = performance.now();
  const result = spawnSync('/usr/bin/time', ['-f', '%M', command, ...args], { encoding: 'utf8', env: process.env });
  const ms = performance.now() - started;
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} exited ${result.status}: ${result.stderr}`);
  const kb = Number(result.stderr.trim().split('\n').at(-1));
  return { ms, rssMb: Number.isFinite(kb) ? kb / 1024 : NaN };
}

/**
 * The Docker image's /app under `dir`: bin/ and dist/ as `npm run build` bundles it (esbuild takes the last
 * --outdir given); no src/, so bin/riskwatch runs the bundle, and no node_modules, so on the `node` on PATH
 * (as the image's 24: `npm run bench` puts the pinned one first). Returns the app's bin/riskwatch.
 */
export function shippedApp(dir: string): string {
  const app = path.join(dir, 'app');
  execFileSync('npm', ['run', '--silent', 'build', '--', `--outdir=${path.join(app, 'dist')}`], { cwd: REPO, stdio: ['ignore', 'ignore', 'inherit'] });
  fs.cpSync(path.join(REPO, 'bin'), path.join(app, 'bin'), { recursive: true });
  return path.join(app, 'bin', 'riskwatch');
}

export async function measureStartup(): Promise<StartupResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rw-bench-startup-'));
  try {
    const shipped = shippedApp(dir);
    const config = path.join(dir, 'riskwatch.yaml');
    fs.writeFileSync(config, `cloudflare:\n  api_token: bench\naccounts:\n  - id: ${'b'.repeat(32)}\n    name: bench\nstate:\n  sqlite: ./state.db\nsinks:\n  - name: console\n    type: console\n`);
    execFileSync(BIN, ['silence', 'add', '--user', 'bench@example.com', '--for', '1h', '--reason', 'bench', '--config', config]);
    const node = path.join(REPO, 'node_modules', 'node', 'bin', 'node');
    const bare = fs.existsSync(node) ? node : process.execPath;
    const commands: Record<string, string[]> = {
      'check-config': ['check-config', '--config', config],
      status: ['status', '--config', config],
      'silence list': ['silence', 'list', '--config', config],
    };
    const bareMs: number[] = [];
    const result = { commands: {} as Record<string, CommandStartup>, shipped: {} as Record<string, CommandStartup> };
    for (const [name, args] of Object.entries(commands)) {
      // Both ways in turn, each run after a bare start of its own.
      const ways = [
        { bin: BIN, into: result.commands, ratios: [] as number[], ms: [] as number[], rss: [] as number[] },
        { bin: shipped, into: result.shipped, ratios: [] as number[], ms: [] as number[], rss: [] as number[] },
      ];
      for (const way of ways) timed(way.bin, args); // fills the compile cache
      for (let i = 0; i < RUNS; i++) {
        for (const way of ways) {
          const base = timed(bare, ['-e', '0']).ms;
          const run = timed(way.bin, args);
          bareMs.push(base);
          way.ms.push(run.ms);
          way.rss.push(run.rssMb);
          way.ratios.push(run.ms / base);
        }
      }
      for (const way of ways) way.into[name] = { ms: median(way.ms), ratio: median(way.ratios), peakRssMb: median(way.rss) };
    }
    return { bareMs: median(bareMs), ...result };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
