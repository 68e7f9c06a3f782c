import pino, { type Logger } from 'pino';

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
];

/** JSON lines on stdout (SPEC §7), or to `destination` when given (tests). */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino({ level, base: { app: 'riskwatch' }, redact: { paths: REDACT, censor: '****' } }, destination ?? pino.destination(1));
}

/** A logger that drops everything, for tests and commands that print their own output. */
export const silentLogger: Logger = pino({ level: 'silent' });
