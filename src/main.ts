#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { loadConfig, resolveConfigPath } from './config/load.ts';
import { summarizeConfig } from './config/summary.ts';
import { Agent } from 'undici';
import { systemClock } from './clock.ts';
import type { Config } from './config/config.ts';
import { assemble } from './daemon/assemble.ts';
import { RETENTION_MS, Service } from './daemon/service.ts';
import { runDemo } from './demo.ts';
import { inspectStore, openStore } from './store/open.ts';
import { testSinks } from './notify/test-sinks.ts';
import { ConfigErrors, UsageError, UserFacingError } from './errors.ts';
import { createLogger, type Logger } from './log.ts';

const USAGE = `usage: riskwatch <command> [--config FILE]

commands:
  run            poll every account every poll_interval and deliver alerts (the daemon)
  once           poll every account once, deliver what is pending, exit 0 (or 1 on a failure)
  check-config   validate the config and print a summary with secrets masked
  test-sinks     send one marked test notification to each sink [--sink NAME]
  demo           run against a built-in simulated API with a console sink (no config needed)

options:
  --config FILE  config file (default: $RISKWATCH_CONFIG, else ./riskwatch.yaml)
  --sink NAME    with test-sinks: only this sink
  -h, --help     show this help`;

interface Io {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
  readonly env: NodeJS.ProcessEnv;
}

type Command = (options: { config: string | undefined; sink: string | undefined }, io: Io) => Promise<number>;

/** The config file SPEC §3 names (--config, $RISKWATCH_CONFIG, ./riskwatch.yaml), read and validated. */
function readConfig(options: { config: string | undefined }, io: Io): { file: string; config: Config } {
  const file = resolveConfigPath(options.config, io.env);
  return { file, config: loadConfig(file, io.env) };
}

function loggerFor(config: Config): Logger {
  return createLogger(config.log.level, { pretty: config.log.format === 'pretty' });
}

const COMMANDS: Record<string, Command> = {
  'check-config': async (options, io) => {
    const { config } = readConfig(options, io);
    io.out(summarizeConfig(config));
    const store = await inspectStore(config.state);
    if (store) io.out(store);
    io.out('config is valid');
    return 0;
  },

  run: async (options, io) => {
    const { file, config } = readConfig(options, io);
    const log = loggerFor(config);
    // Signals are heard from the start: one that arrives while starting stops right after.
    const stopSignal = nextSignal(['SIGTERM', 'SIGINT']);
    let service: Service | undefined;
    let stopping = false;
    let reloading = Promise.resolve();
    // SIGHUP: read the file again; keep running on the old config if the new one is invalid.
    // Ignored while starting (the file was just read) and while stopping.
    const reload = () => {
      if (!service || stopping) return;
      const running = service;
      reloading = reloading.then(async () => {
        let next: Config;
        try {
          next = loadConfig(file, io.env);
        } catch (error) {
          const lines = error instanceof ConfigErrors ? error.problems : [(error as Error).message];
          log.error({ problems: lines }, `reload failed, still running on the previous config: ${lines.join('; ')}`);
          return;
        }
        await running.reload(next).catch((error: unknown) => log.error({ err: (error as Error).message }, 'reload failed'));
      });
    };
    process.on('SIGHUP', reload);
    try {
      const starting = new AbortController();
      void stopSignal.then(() => starting.abort());
      service = await Service.start(config, { log, signal: starting.signal });
      const signal = await stopSignal;
      stopping = true;
      log.info({ signal }, 'stopping');
      // A second signal while stopping means "now": pending work stays in the state file for next time.
      const force = () => process.exit(1);
      process.once('SIGTERM', force).once('SIGINT', force);
      await reloading;
      await service.stop();
      return 0;
    } finally {
      process.off('SIGHUP', reload);
    }
  },

  demo: async (_options, io) => {
    const stop = nextSignal(['SIGINT', 'SIGTERM']);
    // A second Ctrl-C while cleaning up means "now".
    void stop.then(() => process.once('SIGINT', () => process.exit(130)).once('SIGTERM', () => process.exit(143)));
    await runDemo(io.out, stop);
    return 0;
  },

  'test-sinks': async (options, io) => {
    const { config } = readConfig(options, io);
    const dispatcher = new Agent();
    try {
      const results = await testSinks(config, options.sink, { clock: systemClock, dispatcher, writeLine: io.out });
      for (const result of results) io.out(result.line);
      return results.every((r) => r.ok) ? 0 : 1;
    } finally {
      await dispatcher.close();
    }
  },

  once: async (options, io) => {
    const { config } = readConfig(options, io);
    const store = await openStore(config, { passing: true });
    const log = store.replica === undefined ? loggerFor(config) : loggerFor(config).child({ replica: store.replica });
    try {
      const daemon = assemble(config, { store, log });
      const ok = await daemon.runOnce();
      await daemon.stop();
      await store.prune(Date.now() - RETENTION_MS);
      return ok ? 0 : 1;
    } finally {
      await store.close();
    }
  },
};

function nextSignal(names: readonly NodeJS.Signals[]): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const handlers = names.map((name) => {
      const handler = () => {
        names.forEach((n, i) => process.off(n, handlers[i]!));
        resolve(name);
      };
      process.on(name, handler);
      return handler;
    });
  });
}

/** Runs one CLI invocation and returns its exit code; user errors become one line on stderr. */
export async function main(argv: readonly string[], io: Io): Promise<number> {
  try {
    const { values, positionals } = parseCommandLine(argv);
    if (values.help) {
      io.out(USAGE);
      return 0;
    }
    const [name, ...extra] = positionals;
    if (name === undefined) throw new UsageError('no command given');
    const command = COMMANDS[name];
    if (!command) throw new UsageError(`unknown command "${name}"`);
    if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"`);
    if (values.sink !== undefined && name !== 'test-sinks') throw new UsageError('--sink is only for test-sinks');
    return await command({ config: values.config, sink: values.sink }, io);
  } catch (error) {
    if (error instanceof UsageError) {
      io.err(`riskwatch: ${error.message}`);
      io.err(USAGE);
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

function parseCommandLine(argv: readonly string[]) {
  try {
    return parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        config: { type: 'string' },
        sink: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    // parseArgs explains unknown flags well; keep its first sentence.
    throw new UsageError((error as Error).message.split('. ')[0]!.replace(/\.$/, ''));
  }
}

if (import.meta.main) {
  const io: Io = {
    out: (line) => process.stdout.write(`${line}\n`),
    err: (line) => process.stderr.write(`${line}\n`),
    env: process.env,
  };
  process.exitCode = await main(process.argv.slice(2), io);
}
