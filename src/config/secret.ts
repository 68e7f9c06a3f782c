const { inspect } = process.getBuiltinModule('node:util');

/**
 * A value that must never be logged or printed: API tokens and keys, webhook
 * URLs (a Slack webhook URL is a credential), signing secrets. Serialising or
 * inspecting it shows the masked form; only `reveal()` gives the value.
 */
export class Secret {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
  }
  reveal(): string {
    return this.#value;
  }
  /** A form safe to print: a URL keeps its origin, anything else shows nothing. */
  get masked(): string {
    return maskSecret(this.#value);
  }
  toString(): string {
    return this.masked;
  }
  toJSON(): string {
    return this.masked;
  }
  [inspect.custom](): string {
    return `Secret(${this.masked})`;
  }
}

export function maskSecret(value: string): string {
  // A database or mail server URL: who and where may be shown, never the password.
  if (/^(postgres(ql)?|smtps?):\/\//i.test(value)) {
    try {
      const url = new URL(value);
      return `${url.protocol}//${url.username ? `${url.username}@` : ''}${url.host}${url.pathname}`;
    } catch {
      return '****';
    }
  }
  if (/^https?:\/\//i.test(value)) {
    try {
      return `${new URL(value).origin}/****`;
    } catch {
      // not a URL after all: fall through
    }
  }
  return '****';
}
