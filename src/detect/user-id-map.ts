/**
 * A Map from user id to a small number (below 2³²), compact for the ids
 * Cloudflare gives users: a lowercase UUID is kept as four 32-bit words in an
 * open-addressing table, 20 bytes a slot, instead of a string and a map entry
 * (about 100 bytes). At a million users that is the difference between the
 * poller's memory fitting its budget or not. Any other id goes to a plain Map.
 * Iteration yields the UUIDs in table order, then the others in insertion order.
 */
export class UserIdMap {
  /** Five words per slot: the UUID's 128 bits, then 0 when the slot is empty, else the value + 1 (one cache line, mostly). */
  #slots: Uint32Array;
  #mask: number;
  #uuids = 0;
  readonly #others = new Map<string, number>();
  /** The UUID get() last looked up and where it was found: a set() that follows (the usual read-then-mark) skips the search. */
  #lastId: string | undefined;
  #lastAt = -1;

  constructor(capacity = 16) {
    const slots = 2 ** Math.max(4, Math.ceil(Math.log2(capacity * 2)));
    this.#slots = new Uint32Array(slots * STRIDE);
    this.#mask = slots - 1;
  }

  get size(): number {
    return this.#uuids + this.#others.size;
  }

  get(id: string): number | undefined {
    if (!parseUuid(id)) return this.#others.get(id);
    const at = this.#find();
    this.#lastId = id;
    this.#lastAt = at;
    return at < 0 ? undefined : this.#slots[at + 4]! - 1;
  }

  has(id: string): boolean {
    return this.get(id) !== undefined;
  }

  set(id: string, value: number): this {
    if (this.#lastAt >= 0 && id === this.#lastId) {
      this.#slots[this.#lastAt + 4] = value + 1;
      return this;
    }
    if (!parseUuid(id)) {
      this.#others.set(id, value);
      return this;
    }
    const found = this.#find();
    if (found >= 0) {
      this.#slots[found + 4] = value + 1;
      return this;
    }
    this.#lastId = undefined;
    if ((this.#uuids + 1) * 4 > (this.#mask + 1) * 3) this.#grow();
    const at = this.#emptySlot();
    this.#slots.set(WORDS, at);
    this.#slots[at + 4] = value + 1;
    this.#uuids++;
    return this;
  }

  delete(id: string): boolean {
    if (!parseUuid(id)) return this.#others.delete(id);
    this.#lastId = undefined;
    const found = this.#find();
    if (found < 0) return false;
    const slots = this.#slots;
    const mask = this.#mask;
    let hole = found / STRIDE;
    slots[found + 4] = 0;
    this.#uuids--;
    // Backward-shift deletion: move up every later entry of the run that the hole would hide.
    for (let next = (hole + 1) & mask; slots[next * STRIDE + 4] !== 0; next = (next + 1) & mask) {
      const home = hashAt(slots, next * STRIDE) & mask;
      const stays = hole <= next ? hole < home && home <= next : hole < home || home <= next;
      if (stays) continue;
      slots.copyWithin(hole * STRIDE, next * STRIDE, next * STRIDE + STRIDE);
      slots[next * STRIDE + 4] = 0;
      hole = next;
    }
    return true;
  }

  *entries(): MapIterator<[string, number]> {
    const slots = this.#slots;
    for (let at = 0; at < slots.length; at += STRIDE) {
      if (slots[at + 4] !== 0) yield [formatUuid(slots, at), slots[at + 4]! - 1];
    }
    yield* this.#others.entries();
  }

  *keys(): MapIterator<string> {
    for (const [id] of this.entries()) yield id;
  }

  /** Where the UUID in WORDS is (the index of its slot's first word), or -1. */
  #find(): number {
    const slots = this.#slots;
    const mask = this.#mask;
    for (let slot = hashAt(WORDS, 0) & mask; ; slot = (slot + 1) & mask) {
      const at = slot * STRIDE;
      if (slots[at + 4] === 0) return -1;
      if (slots[at] === WORDS[0] && slots[at + 1] === WORDS[1] && slots[at + 2] === WORDS[2] && slots[at + 3] === WORDS[3]) return at;
    }
  }

  /** Where the UUID in WORDS goes (it is known to be absent). */
  #emptySlot(): number {
    let slot = hashAt(WORDS, 0) & this.#mask;
    while (this.#slots[slot * STRIDE + 4] !== 0) slot = (slot + 1) & this.#mask;
    return slot * STRIDE;
  }

  #grow(): void {
    const old = this.#slots;
    this.#slots = new Uint32Array(old.length * 2);
    this.#mask = this.#slots.length / STRIDE - 1;
    for (let from = 0; from < old.length; from += STRIDE) {
      if (old[from + 4] === 0) continue;
      let slot = hashAt(old, from) & this.#mask;
      while (this.#slots[slot * STRIDE + 4] !== 0) slot = (slot + 1) & this.#mask;
      this.#slots.set(old.subarray(from, from + STRIDE), slot * STRIDE);
    }
  }
}

const STRIDE = 5;

/** The last UUID parsed: scratch space, so that a lookup allocates nothing. */
const WORDS = new Uint32Array(4);

/** Hex digit values by character code; -1 for anything else (upper case included: it would not print back the same). */
const HEX = new Int8Array(128).fill(-1);
for (let c = 0; c < 16; c++) HEX['0123456789abcdef'.charCodeAt(c)] = c;

/** Parses a lowercase, hyphenated UUID into WORDS; false for anything else. Hot: once per user per poll. */
function parseUuid(id: string): boolean {
  if (id.length !== 36 || id.charCodeAt(8) !== 45 || id.charCodeAt(13) !== 45 || id.charCodeAt(18) !== 45 || id.charCodeAt(23) !== 45) return false;
  const w0 = hexRun(id, 0, 8, 0);
  const w1 = hexRun(id, 14, 18, hexRun(id, 9, 13, 0));
  const w2 = hexRun(id, 24, 28, hexRun(id, 19, 23, 0));
  const w3 = hexRun(id, 28, 36, 0);
  if (w0 < 0 || w1 < 0 || w2 < 0 || w3 < 0) return false;
  WORDS[0] = w0;
  WORDS[1] = w1;
  WORDS[2] = w2;
  WORDS[3] = w3;
  return true;
}

/** `word` followed by the hex digits of id[from, to), as an unsigned 32-bit number; -1 if one is not a hex digit. */
function hexRun(id: string, from: number, to: number, word: number): number {
  if (word < 0) return -1;
  let w = word;
  for (let i = from; i < to; i++) {
    const code = id.charCodeAt(i);
    const digit = code < 128 ? HEX[code]! : -1;
    if (digit < 0) return -1;
    w = ((w << 4) | digit) >>> 0;
  }
  return w;
}

function formatUuid(words: Uint32Array, at: number): string {
  const hex = (n: number) => n.toString(16).padStart(8, '0');
  const [a, b, c, d] = [hex(words[at]!), hex(words[at + 1]!), hex(words[at + 2]!), hex(words[at + 3]!)];
  return `${a}-${b.slice(0, 4)}-${b.slice(4)}-${c.slice(0, 4)}-${c.slice(4)}${d}`;
}

/** A well-mixed 32-bit hash of the four words at `at` (ids that share long prefixes still spread). */
function hashAt(words: Uint32Array, at: number): number {
  let h = words[at]! ^ Math.imul(words[at + 1]!, 0x9e3779b1) ^ Math.imul(words[at + 2]!, 0x85ebca6b) ^ Math.imul(words[at + 3]!, 0xc2b2ae35);
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  return (h ^ (h >>> 16)) >>> 0;
}
