import pino, { type Logger } from 'pino';
import type pretty from 'pino-pretty';

const { createRequire } = process.getBuiltinModule('node:module');

export type { Logger };

/** Paths pino blanks in every line, as a second guard behind the Secret type. */
const REDACT = [
  'token',
  'api_token',
  'api_key',
  'secret',
  'url',
  'headers.authorization',
  'headers["x-auth-key"]',
  '*.token',
  '*.api_token',
  '*.api_key',
  '*.secret',
  '*.url',
];

export interface LoggerOptions {
  /** Human-readable lines instead of JSON (log.format: pretty). */
  readonly pretty?: boolean;
  /** Where lines go; stdout when left out (tests pass a stream). */
  readonly destination?: pino.DestinationStream;
}

/** JSON lines on stdout (SPEC §7), pretty only when asked. */
export function createLogger(level: string, options: LoggerOptions = {}): Logger {
  const destination = options.destination ?? (options.pretty ? prettyStream() : pino.destination(1));
  return pino({ level, base: { app: 'riskwatch' }, redact: { paths: REDACT, censor: '****' } }, destination);
}

/** pino-pretty, loaded only for log.format: pretty (JSON lines are the default, and a daemon's usual). */
function prettyStream(): pino.DestinationStream {
  const load = createRequire(import.meta.url)('pino-pretty') as typeof pretty;
  return load({ colorize: process.stdout.isTTY === true, destination: 1 });
}

/** A logger that drops everything, for tests and commands that print their own output. */
export const silentLogger: Logger = pino({ level: 'silent' });
