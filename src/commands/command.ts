import type { ParseArgsConfig } from 'node:util';
import { loadConfig, resolveConfigPath } from '../config/load.ts';
import type { Config } from '../config/config.ts';
import { accountInput, durationInput, timeInput } from '../operate/input.ts';

/** Where a command writes, and the environment it reads (`${VAR}` in the config). */
export interface Io {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
  readonly env: NodeJS.ProcessEnv;
}

export type Options = NonNullable<ParseArgsConfig['options']>;

/** What parseArgs gave a command: its flags (`--config` included) and its words after the command's name. */
export interface Args {
  readonly values: Readonly<Record<string, string | boolean | string[] | undefined>>;
  readonly positionals: readonly string[];
}

/** One file under src/commands/: its own flags, and what it does; it returns the exit code. */
export interface Command {
  readonly options: Options;
  /** How many words may follow the command's name (`silence expire ID`: 1). Default 0. */
  readonly positionals?: number;
  run(args: Args, io: Io): Promise<number>;
}

/** The config file SPEC §3 names (--config, $RISKWATCH_CONFIG, ./riskwatch.yaml), read and validated. */
export function readConfig(args: Args, io: Io): { file: string; config: Config } {
  const file = resolveConfigPath(args.values.config as string | undefined, io.env);
  return { file, config: loadConfig(file, io.env) };
}

export function text(args: Args, flag: string): string | undefined {
  return args.values[flag] as string | undefined;
}

/** `--flag D`, a duration (`90m`, `24h`, `7d`), in ms. */
export function durationFlag(args: Args, flag: string): number | undefined {
  return durationInput(`--${flag}`, text(args, flag));
}

/** `--flag T`, an RFC 3339 time, in epoch ms. */
export function timeFlag(args: Args, flag: string): number | undefined {
  return timeInput(`--${flag}`, text(args, flag));
}

/** `--account A`: a configured account's id, by id or name. */
export function accountFlag(args: Args, config: Config): string | undefined {
  return accountInput('--account', text(args, 'account'), config);
}

/** Resolves with the first of these signals to arrive, and stops listening for them. */
export function nextSignal(names: readonly NodeJS.Signals[]): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const handlers = names.map((name) => {
      const handler = () => {
        for (const [i, n] of names.entries()) process.off(n, handlers[i]!);
        resolve(name);
      };
      process.on(name, handler);
      return handler;
    });
  });
}
