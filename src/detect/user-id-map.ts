/**
 * A Map from user id to a small number (below 2³²), compact for the ids
 * Cloudflare gives users: a lowercase UUID is kept as four 32-bit words in an
 * open-addressing table, 20 bytes a slot, instead of a string and a map entry
 * (about 100 bytes). At a million users that is the difference between the
 * poller's memory fitting its budget or not. Any other id goes to a plain Map.
 * Iteration yields the UUIDs in table order, then the others in insertion order.
 */
export class UserIdMap {
  /** Four words per slot: the UUID's 128 bits. */
  #words: Uint32Array;
  /** Per slot: 0 when empty, else the value + 1. */
  #values: Uint32Array;
  #mask: number;
  #uuids = 0;
  readonly #others = new Map<string, number>();

  constructor(capacity = 16) {
    const slots = 2 ** Math.max(4, Math.ceil(Math.log2(capacity * 2)));
    this.#words = new Uint32Array(slots * 4);
    this.#values = new Uint32Array(slots);
    this.#mask = slots - 1;
  }

  get size(): number {
    return this.#uuids + this.#others.size;
  }

  get(id: string): number | undefined {
    if (!parseUuid(id)) return this.#others.get(id);
    const slot = this.#find();
    return slot < 0 ? undefined : this.#values[slot]! - 1;
  }

  has(id: string): boolean {
    return this.get(id) !== undefined;
  }

  set(id: string, value: number): this {
    if (!parseUuid(id)) {
      this.#others.set(id, value);
      return this;
    }
    const found = this.#find();
    if (found >= 0) {
      this.#values[found] = value + 1;
      return this;
    }
    if ((this.#uuids + 1) * 4 > this.#values.length * 3) {
      this.#grow();
    }
    const slot = this.#emptySlot();
    this.#words.set(WORDS, slot * 4);
    this.#values[slot] = value + 1;
    this.#uuids++;
    return this;
  }

  delete(id: string): boolean {
    if (!parseUuid(id)) return this.#others.delete(id);
    let hole = this.#find();
    if (hole < 0) return false;
    this.#values[hole] = 0;
    this.#uuids--;
    // Backward-shift deletion: move up every later entry of the run that the hole would hide.
    const values = this.#values;
    const words = this.#words;
    for (let next = (hole + 1) & this.#mask; values[next] !== 0; next = (next + 1) & this.#mask) {
      const home = hashAt(words, next * 4) & this.#mask;
      const between = hole <= next ? hole < home && home <= next : hole < home || home <= next;
      if (between) continue;
      words.copyWithin(hole * 4, next * 4, next * 4 + 4);
      values[hole] = values[next]!;
      values[next] = 0;
      hole = next;
    }
    return true;
  }

  *entries(): MapIterator<[string, number]> {
    const values = this.#values;
    for (let slot = 0; slot < values.length; slot++) {
      if (values[slot] !== 0) yield [formatUuid(this.#words, slot * 4), values[slot]! - 1];
    }
    yield* this.#others.entries();
  }

  *keys(): MapIterator<string> {
    for (const [id] of this.entries()) yield id;
  }

  /** The slot holding the UUID in WORDS, or -1. */
  #find(): number {
    const values = this.#values;
    const words = this.#words;
    for (let slot = hashAt(WORDS, 0) & this.#mask; values[slot] !== 0; slot = (slot + 1) & this.#mask) {
      const at = slot * 4;
      if (words[at] === WORDS[0] && words[at + 1] === WORDS[1] && words[at + 2] === WORDS[2] && words[at + 3] === WORDS[3]) return slot;
    }
    return -1;
  }

  /** Where the UUID in WORDS goes (it is known to be absent). */
  #emptySlot(): number {
    let slot = hashAt(WORDS, 0) & this.#mask;
    while (this.#values[slot] !== 0) slot = (slot + 1) & this.#mask;
    return slot;
  }

  #grow(): void {
    const words = this.#words;
    const values = this.#values;
    this.#words = new Uint32Array(words.length * 2);
    this.#values = new Uint32Array(values.length * 2);
    this.#mask = this.#values.length - 1;
    for (let slot = 0; slot < values.length; slot++) {
      if (values[slot] === 0) continue;
      let to = hashAt(words, slot * 4) & this.#mask;
      while (this.#values[to] !== 0) to = (to + 1) & this.#mask;
      this.#words.set(words.subarray(slot * 4, slot * 4 + 4), to * 4);
      this.#values[to] = values[slot]!;
    }
  }
}

/** The last UUID parsed: scratch space, so that a lookup allocates nothing. */
const WORDS = new Uint32Array(4);

/** Hex digit values by character code; -1 for anything else (upper case included: it would not print back the same). */
const HEX = new Int8Array(128).fill(-1);
for (let c = 0; c < 16; c++) HEX['0123456789abcdef'.charCodeAt(c)] = c;

/** Parses a lowercase, hyphenated UUID into WORDS; false for anything else. */
function parseUuid(id: string): boolean {
  if (id.length !== 36 || id.charCodeAt(8) !== 45 || id.charCodeAt(13) !== 45 || id.charCodeAt(18) !== 45 || id.charCodeAt(23) !== 45) return false;
  let word = 0;
  let digits = 0;
  for (let i = 0; i < 36; i++) {
    if (i === 8 || i === 13 || i === 18 || i === 23) continue;
    const code = id.charCodeAt(i);
    const digit = code < 128 ? HEX[code]! : -1;
    if (digit < 0) return false;
    word = (word << 4) | digit;
    if (++digits % 8 === 0) {
      WORDS[digits / 8 - 1] = word >>> 0;
      word = 0;
    }
  }
  return true;
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
