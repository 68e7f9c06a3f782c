#!/usr/bin/env node
import type { Io } from './commands/command.ts';
import { COMMANDS } from './commands/index.ts';
import { ConfigErrors, UsageError, UserFacingError } from './errors.ts';
import { VERSION } from './version.ts';

const { parseArgs } = process.getBuiltinModule('node:util');

const USAGE = `usage: riskwatch <command> [options] [--config FILE]

commands:
${Object.values(COMMANDS)
  .map((c) => `  ${c.usage}\n      ${c.summary}`)
  .join('\n')}

options:
  --config FILE  config file (default: $RISKWATCH_CONFIG, else ./riskwatch.yaml)
  --json         with status, users, events, silence list, deliveries: one JSON document
  -h, --help     show this help
  -V, --version  show riskwatch's version and the Node it runs on

D is a duration (90m, 24h, 7d), T an RFC 3339 time, U an email or user id, A an account id or name.`;

/** Runs one CLI invocation and returns its exit code; user errors become one line on stderr. */
export async function main(argv: readonly string[], io: Io): Promise<number> {
  try {
    if (argv.length === 0) throw new UsageError('no command given');
    if (argv[0] === '-h' || argv[0] === '--help' || argv[0] === 'help') {
      io.out(USAGE);
      return 0;
    }
    if (argv[0] === '-V' || argv[0] === '--version' || argv[0] === 'version') {
      io.out(`riskwatch ${VERSION} (Node ${process.versions.node})`);
      return 0;
    }
    // The longest run of leading words that names a command: `silence add`, then `silence`.
    const words = argv.slice(0, 2);
    const name = [words.join(' '), words[0]!].find((candidate) => COMMANDS[candidate] !== undefined);
    const group = Object.keys(COMMANDS).filter((key) => key.startsWith(`${argv[0]} `));
    if (name === undefined && group.length > 0) throw new UsageError(`${argv[0]}: give one of ${group.map((key) => key.split(' ')[1]).join(', ')}`);
    if (name === undefined) throw new UsageError(argv[0]!.startsWith('-') ? `${argv[0]}: give the command first` : `unknown command "${argv.slice(0, 2).join(' ')}"`);
    const entry = COMMANDS[name]!;
    const command = await entry.load();
    const rest = argv.slice(name.split(' ').length);
    const args = parseCommandLine(name, rest, command.options);
    if (args.values.help) {
      io.out(`usage: riskwatch ${entry.usage} [--config FILE]\n  ${entry.summary}`);
      return 0;
    }
    if (args.positionals.length > (command.positionals ?? 0)) throw new UsageError(`${name}: unexpected argument "${args.positionals[command.positionals ?? 0]}"`);
    return await command.run(args, io);
  } catch (error) {
    if (error instanceof UsageError) {
      io.err(`riskwatch: ${error.message}`);
      io.err('run riskwatch --help for the commands and their options');
      return error.exitCode;
    }
    if (error instanceof ConfigErrors) {
      for (const problem of error.problems) io.err(`riskwatch: ${problem}`);
      return error.exitCode;
    }
    if (error instanceof UserFacingError) {
      io.err(`riskwatch: ${error.message}`);
      return error.exitCode;
    }
    throw error;
  }
}

function parseCommandLine(name: string, argv: readonly string[], options: NonNullable<Parameters<typeof parseArgs>[0]>['options']) {
  try {
    return parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: { ...options, config: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    });
  } catch (error) {
    // parseArgs explains unknown flags well; keep its first sentence, and say which command.
    throw new UsageError(`${name}: ${(error as Error).message.split('. ')[0]!.replace(/\.$/, '')}`);
  }
}

if (import.meta.main) {
  // A reader that has what it wanted closes the pipe (`riskwatch events | head -1`): stop quietly.
  // A command that delivers (its console sink prints events) has nowhere to print them: it stops, as a failure.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
    process.exit(['run', 'once', 'demo'].includes(process.argv[2] ?? '') ? 1 : 0);
  });
  const io: Io = {
    out: (line) => process.stdout.write(`${line}\n`),
    err: (line) => process.stderr.write(`${line}\n`),
    env: process.env,
  };
  process.exitCode = await main(process.argv.slice(2), io);
}
