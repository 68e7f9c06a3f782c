/**
 * HTML that escapes by default: every value put into an `html` template is
 * text (names, emails, reasons, errors: all untrusted), unless it is itself
 * the result of an `html` template. There is no other way to make markup.
 */
export class Html {
  readonly #markup: string;
  private constructor(markup: string) {
    this.#markup = markup;
  }
  toString(): string {
    return this.#markup;
  }
  /** Only `html` makes one: a value from anywhere else is escaped. */
  static fromTemplate(strings: TemplateStringsArray, values: readonly unknown[]): Html {
    let markup = strings[0]!;
    for (const [i, value] of values.entries()) markup += render(value) + strings[i + 1]!;
    return new Html(markup);
  }
}

/** What a template may hold: text, numbers, markup, lists of them; null, undefined and false show nothing. */
export type Content = Html | string | number | null | undefined | false | readonly Content[];

export function html(strings: TemplateStringsArray, ...values: readonly Content[]): Html {
  return Html.fromTemplate(strings, values);
}

function render(value: unknown): string {
  if (value instanceof Html) return value.toString();
  if (Array.isArray(value)) return value.map(render).join('');
  if (value === null || value === undefined || value === false) return '';
  return escapeText(String(value));
}

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;', '`': '&#96;' };

/**
 * Text as HTML text (also safe inside a quoted attribute). Control characters
 * and the bidirectional overrides a display name could carry to reorder what
 * is shown around it (U+202E) are written out as their code (`⟨U+202E⟩`), so
 * that what an operator reads is what the name holds.
 */
export function escapeText(text: string): string {
  return text
    .replace(/[&<>"'`]/g, (c) => ENTITIES[c]!)
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, (c) => `⟨U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}⟩`);
}

/**
 * A link to one of riskwatch's own pages: `/` and each segment URL-encoded, so a value can never make it another scheme or host.
 * Leading empty segments are dropped: `href('', 'evil.example')` would otherwise be `//evil.example`, another host.
 */
export function href(...segments: readonly string[]): string {
  return `/${segments.map(encodeURIComponent).join('/')}`.replace(/^\/+/, '/');
}

/** A query string from the values given (`?level=high&account=a`), empty values left out. */
export function query(values: Readonly<Record<string, string | number | undefined>>): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(values)) if (value !== undefined && value !== '') params.set(key, String(value));
  const text = params.toString();
  return text === '' ? '' : `?${text}`;
}
