/**
 * Receivers' size limits, in one place (RECEIVERS.md): cutting text by
 * characters or by UTF-8 bytes without breaking a character, and fitting as
 * many items as a byte budget allows, the rest said as "…and N more". Every
 * cut is written down in `cuts`, so that the worker can log what a receiver
 * will not show.
 */

const ELLIPSIS = '…';

/** What a render had to shorten, in words: "summary cut from 1500 to 1024 characters". */
export type Cuts = string[];

/**
 * At most `max` UTF-16 units (so at most `max` code points too, however the
 * receiver counts), ending in "…" when cut, at a code point boundary: an emoji
 * at the cut goes whole, never half a surrogate pair.
 */
export function clip(text: string, max: number, cuts?: Cuts, what = 'text'): string {
  if (text.length <= max) return text;
  let end = Math.max(0, max - ELLIPSIS.length);
  if (end > 0 && isHighSurrogate(text.charCodeAt(end - 1))) end--;
  cuts?.push(`${what} cut from ${text.length} to ${max} characters`);
  return text.slice(0, end) + ELLIPSIS;
}

/** At most `maxBytes` bytes of UTF-8, ending in "…" when cut, never inside a character. */
export function clipBytes(text: string, maxBytes: number, cuts?: Cuts, what = 'text'): string {
  const size = Buffer.byteLength(text);
  if (size <= maxBytes) return text;
  const room = Math.max(0, maxBytes - Buffer.byteLength(ELLIPSIS));
  // Cut the encoded bytes, then drop a character the cut split (it decodes to U+FFFD at the end).
  let head = Buffer.from(text).subarray(0, room).toString('utf8');
  if (head.endsWith('\uFFFD') && !text.startsWith(head)) head = head.slice(0, -1);
  cuts?.push(`${what} cut from ${size} to ${maxBytes} bytes`);
  return head + ELLIPSIS;
}

/** The size of a JSON body as sent. */
export function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value));
}

/**
 * The most items, of `count`, that `fits(n)` allows, by bisection: `fits` must
 * hold for 0 (what is left when nothing fits: a header and "and N more") and
 * be monotonic. The caller renders with the first n items and the rest as
 * "…and N more".
 */
export function fitCount(count: number, fits: (n: number) => boolean): number {
  let low = 0;
  let high = count;
  while (low < high) {
    const mid = Math.ceil((low + high) / 2);
    if (fits(mid)) low = mid;
    else high = mid - 1;
  }
  return low;
}

/** Plural noun: "1 user", "3 users". */
export function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

function isHighSurrogate(unit: number): boolean {
  return unit >= 0xd800 && unit <= 0xdbff;
}
