import pino, { type Logger } from 'pino';
import type { Config } from './config/config.ts';

export type { Logger };

/** Paths pino blanks in every line, as a second guard behind the Secret type. */
const REDACT = ['token', 'api_token', 'api_key', 'secret', 'url', 'headers.authorization', 'headers["x-auth-key"]', '*.token', '*.api_token', '*.api_key', '*.secret', '*.url'];

export interface LoggerOptions {
  /** Where lines go; stdout when left out (tests pass a stream, log.format: pretty pino-pretty's). */
  readonly destination?: pino.DestinationStream;
}

/** JSON lines on stdout (SPEC §7), or wherever `destination` says. */
export function createLogger(level: string, options: LoggerOptions = {}): Logger {
  return pino({ level, base: { app: 'riskwatch' }, redact: { paths: REDACT, censor: '****' } }, options.destination ?? pino.destination(1));
}

/**
 * The logger a config's `log:` asks for. pino-pretty is imported only for
 * log.format: pretty (JSON lines are the default, and a daemon's usual), and
 * by an import the bundle can follow, so the image needs no node_modules.
 */
export async function configuredLogger(log: Config['log']): Promise<Logger> {
  if (log.format !== 'pretty') return createLogger(log.level);
  const { default: pretty } = await import('pino-pretty');
  return createLogger(log.level, { destination: pretty({ colorize: process.stdout.isTTY === true, destination: 1 }) });
}

/** A logger that drops everything, for tests and commands that print their own output. */
export const silentLogger: Logger = pino({ level: 'silent' });
