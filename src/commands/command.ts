import type { ParseArgsConfig } from 'node:util';
import { loadConfig, resolveConfigPath } from '../config/load.ts';
import type { Config } from '../config/config.ts';
import { parseDuration, parseTime } from '../config/duration.ts';
import { UsageError } from '../errors.ts';

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
  const value = text(args, flag);
  if (value === undefined) return undefined;
  const ms = parseDuration(value);
  if (ms === undefined || ms <= 0) throw new UsageError(`--${flag} ${value}: not a duration (use 90m, 24h, 7d)`);
  return ms;
}

/** `--flag T`, an RFC 3339 time, in epoch ms. */
export function timeFlag(args: Args, flag: string): number | undefined {
  const value = text(args, flag);
  if (value === undefined) return undefined;
  const ms = parseTime(value);
  if (ms === undefined) throw new UsageError(`--${flag} ${value}: not an RFC 3339 time on the calendar (2026-12-01T18:00:00Z)`);
  return ms;
}

/** `--account A`: a configured account's id, by id or name. */
export function accountFlag(args: Args, config: Config): string | undefined {
  const value = text(args, 'account');
  if (value === undefined) return undefined;
  const account = config.accounts.find((a) => a.id === value || a.name === value);
  if (!account) throw new UsageError(`--account ${value}: not the id or name of a configured account (${config.accounts.map((a) => a.label).join(', ')})`);
  return account.id;
}

/** An account's name as configured, or null. */
export function accountName(config: Config, id: string): string | null {
  return config.accounts.find((a) => a.id === id)?.name ?? null;
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
