import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';

export const REPO = path.resolve(import.meta.dirname, '../..');

/** A real riskwatch child (`node src/main.ts …` unless told otherwise), its output collected line by line. */
export interface RiskwatchProcess {
  readonly child: ChildProcess;
  readonly stdout: string[];
  readonly stderr: string[];
  /** Resolves when a stdout line matches, or rejects after `timeoutMs` with what was seen. */
  waitForLine(match: RegExp | ((line: string) => boolean), timeoutMs?: number): Promise<string>;
  /** Resolves with the exit code (or signal name) once the process is gone. */
  readonly exited: Promise<number | string>;
}

/** How a test starts riskwatch: this Node on the sources. The entry-point test passes `bin/riskwatch` or `npm start --`. */
export const NODE_ENTRY: readonly string[] = [process.execPath, 'src/main.ts'];

/** Environment variables whose values are secrets by their name: they must never appear in any output. */
const SECRET_NAME = /TOKEN|SECRET|KEY|PASSWORD|WEBHOOK_URL/i;

/**
 * Spawns riskwatch. Every line it prints is checked, when it exits, for the
 * values of secret-looking variables in `env` and for `secrets`: a leak makes
 * `exited` reject, so every test that spawns the real process checks it.
 */
export function spawnRiskwatch(args: readonly string[], env: Record<string, string> = {}, secrets: readonly string[] = [], entry: readonly string[] = NODE_ENTRY): RiskwatchProcess {
  const [command, ...prefix] = entry;
  const child = spawn(command!, [...prefix, ...args], {
    cwd: REPO,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  const waiters = new Set<() => void>();
  createInterface({ input: child.stdout! }).on('line', (line) => {
    stdout.push(line);
    for (const check of waiters) check();
  });
  createInterface({ input: child.stderr! }).on('line', (line) => stderr.push(line));
  const watched = [
    ...Object.entries(env)
      .filter(([name]) => SECRET_NAME.test(name))
      .map(([, value]) => value),
    ...secrets,
  ].filter((v) => v.length >= 6);
  const exited = new Promise<number | string>((resolve, reject) =>
    child.once('close', (code, signal) => {
      const output = [...stdout, ...stderr].join('\n');
      const leaked = watched.filter((secret) => output.includes(secret));
      if (leaked.length > 0) reject(new Error(`riskwatch printed ${leaked.length} secret value(s): ${leaked.map((s) => `${s.slice(0, 3)}…`).join(', ')}`));
      else resolve(code ?? signal ?? -1);
    }),
  );

  const waitForLine = (match: RegExp | ((line: string) => boolean), timeoutMs = 15_000) =>
    new Promise<string>((resolve, reject) => {
      const test = typeof match === 'function' ? match : (line: string) => match.test(line);
      let seen = 0;
      const check = () => {
        for (; seen < stdout.length; seen++) {
          if (test(stdout[seen]!)) {
            cleanup();
            resolve(stdout[seen]!);
            return;
          }
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`no matching line within ${timeoutMs} ms; stdout:\n${stdout.slice(-20).join('\n')}\nstderr:\n${stderr.join('\n')}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });

  return { child, stdout, stderr, waitForLine, exited };
}

/** After a test: a process still running is killed and waited for. */
export async function killIfRunning(proc: RiskwatchProcess | undefined): Promise<void> {
  if (!proc || proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  proc.child.kill('SIGKILL');
  await proc.exited.catch(() => {});
}
