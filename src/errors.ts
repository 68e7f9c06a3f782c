/**
 * Errors a user can cause or fix. The CLI prints their message as one line and
 * exits with `exitCode`; anything else reaching the top is a bug and keeps its stack.
 */
export class UserFacingError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.exitCode = exitCode;
  }
}

/** Bad command line, bad config file or bad environment: exit 2. */
export class ConfigError extends UserFacingError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, 2, options);
  }
}

/** Several config problems found at once; each is one line. */
export class ConfigErrors extends ConfigError {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(problems.join('\n'));
    this.problems = problems;
  }
}

export class UsageError extends UserFacingError {
  constructor(message: string) {
    super(message, 2);
  }
}
