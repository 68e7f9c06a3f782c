/**
 * A Map from user id to a small number (below 2³²), compact for the ids
 * Cloudflare gives users: a lowercase UUID is kept as four 32-bit words, 20
 * bytes with its value, instead of a string and a map entry (about 100
 * bytes). At a million users that is the difference between the poller's
 * memory fitting its budget or not. Any other id goes to a plain Map.
 *
 * The entries lie in one dense array, with a hash index beside it. A summary
 * lists users in much the same order every poll, so a lookup first tries the
 * entry after the last one found: a read of the summary walks the array in
 * order instead of jumping around memory. When a read found many entries out
 * of order (the first read after a load, whose order is the store's), settle()
 * lays the array out in the order that read found them.
 * Iteration yields the UUIDs in array order, then the others in insertion order.
 *
 * An MSSP polls a thousand accounts of a thousand users from one process
 * (issue 28): what each map holds beyond its 20 bytes a user is multiplied by
 * the accounts. So the index is 16-bit while positions fit (a table of up to
 * 65,536 slots), the order a read found entries in is kept only for a read
 * that went out of order, and settle() gives back room that growth left unused.
 */
export class UserIdMap {
  /** Five words per entry: the UUID's 128 bits, then the value. */
  #entries: Uint32Array;
  #count = 0;
  /** Open addressing: per slot, 0 when empty, else the entry's position + 1 (16-bit while the table has at most 65,536 slots). */
  #index: Uint16Array | Uint32Array;
  #mask: number;
  /** Where the next lookup is expected: just after the last entry found. */
  #cursor = 0;
  /**
   * Since the last settle(): lookups found away from the cursor, and every position found, in order.
   * Until the first miss the positions found are 0, 1, 2…, so #found is only made at the first miss.
   */
  #misses = 0;
  #found: Uint32Array | undefined;
  #foundCount = 0;
  readonly #others = new Map<string, number>();
  /** The UUID get() last looked up and where it was found: a set() that follows (the usual read-then-mark) skips the search. */
  #lastId: string | undefined;
  #lastAt = -1;

  constructor(capacity = 16) {
    const entries = Math.max(16, capacity);
    this.#entries = new Uint32Array(entries * STRIDE);
    this.#index = indexOf(2 ** Math.ceil(Math.log2(entries * 2)));
    this.#mask = this.#index.length - 1;
  }

  get size(): number {
    return this.#count + this.#others.size;
  }

  get(id: string): number | undefined {
    if (!parseUuid(id)) return this.#others.get(id);
    const at = this.#find();
    if (at < 0) {
      this.#lastId = undefined;
      return undefined;
    }
    if (at !== this.#cursor && this.#misses++ === 0) this.#foundInOrder();
    if (this.#found === undefined) {
      if (this.#foundCount < this.#count) this.#foundCount++;
    } else if (this.#foundCount < this.#found.length) this.#found[this.#foundCount++] = at;
    this.#cursor = at + 1;
    this.#lastId = id;
    this.#lastAt = at;
    return this.#entries[at * STRIDE + 4];
  }

  /**
   * Between two reads: when the last one found more than an eighth of the entries out of
   * order, lays the array out in the order it found them, so that the next read walks it.
   */
  settle(): void {
    if (this.#misses * 8 > this.#count && this.#foundCount > 0) this.#reorder();
    else if (this.#entries.length > (this.#count + (this.#count >> 2) + 16) * STRIDE) this.#resize(this.#count + (this.#count >> 3) + 16);
    this.#misses = 0;
    this.#foundCount = 0;
    this.#found = undefined;
    this.#cursor = 0;
  }

  /** The first lookup away from the cursor since settle(): the ones before it found positions 0, 1, 2… */
  #foundInOrder(): void {
    const found = new Uint32Array(this.#count);
    for (let i = 0; i < this.#foundCount; i++) found[i] = i;
    this.#found = found;
  }

  /** Room for `capacity` entries (at least the count), the index sized to match. */
  #resize(capacity: number): void {
    const entries = new Uint32Array(Math.max(16, capacity, this.#count) * STRIDE);
    entries.set(this.#entries.subarray(0, this.#count * STRIDE));
    this.#entries = entries;
    this.#lastId = undefined;
    const slots = 2 ** Math.ceil(Math.log2(Math.max(32, this.#count * 2)));
    if (slots !== this.#index.length) this.#reindex(slots);
  }

  has(id: string): boolean {
    return this.get(id) !== undefined;
  }

  set(id: string, value: number): this {
    if (this.#lastId !== undefined && id === this.#lastId) {
      this.#entries[this.#lastAt * STRIDE + 4] = value;
      return this;
    }
    if (!parseUuid(id)) {
      this.#others.set(id, value);
      return this;
    }
    const found = this.#find();
    if (found >= 0) {
      this.#entries[found * STRIDE + 4] = value;
      return this;
    }
    this.#lastId = undefined;
    if (this.#count * STRIDE === this.#entries.length) {
      const grown = new Uint32Array(this.#entries.length * 2);
      grown.set(this.#entries);
      this.#entries = grown;
    }
    if ((this.#count + 1) * 2 > this.#index.length) this.#reindex(this.#index.length * 2);
    const at = this.#count++;
    this.#entries.set(WORDS, at * STRIDE);
    this.#entries[at * STRIDE + 4] = value;
    this.#index[this.#freeSlot(hashAt(WORDS, 0))] = at + 1;
    return this;
  }

  delete(id: string): boolean {
    if (!parseUuid(id)) return this.#others.delete(id);
    const at = this.#find();
    if (at < 0) return false;
    this.#lastId = undefined;
    this.#unindex(this.#slotOf(at));
    // The last entry fills the hole, keeping the array dense.
    const last = --this.#count;
    if (at !== last) {
      this.#index[this.#slotOf(last)] = at + 1;
      this.#entries.copyWithin(at * STRIDE, last * STRIDE, last * STRIDE + STRIDE);
    }
    if (this.#cursor > this.#count) this.#cursor = this.#count;
    return true;
  }

  *entries(): MapIterator<[string, number]> {
    for (let at = 0; at < this.#count; at++) yield [formatUuid(this.#entries, at * STRIDE), this.#entries[at * STRIDE + 4]!];
    yield* this.#others.entries();
  }

  *keys(): MapIterator<string> {
    for (const [id] of this.entries()) yield id;
  }

  /** The position of the entry for the UUID in WORDS, or -1: the expected one first, else by the index. */
  #find(): number {
    const entries = this.#entries;
    if (this.#cursor < this.#count && sameWords(entries, this.#cursor * STRIDE)) return this.#cursor;
    const index = this.#index;
    const mask = this.#mask;
    for (let slot = hashAt(WORDS, 0) & mask; index[slot] !== 0; slot = (slot + 1) & mask) {
      const at = index[slot]! - 1;
      if (sameWords(entries, at * STRIDE)) return at;
    }
    return -1;
  }

  /** The index slot that points to the entry at `at`. */
  #slotOf(at: number): number {
    let slot = hashAt(this.#entries, at * STRIDE) & this.#mask;
    while (this.#index[slot] !== at + 1) slot = (slot + 1) & this.#mask;
    return slot;
  }

  #freeSlot(hash: number): number {
    let slot = hash & this.#mask;
    while (this.#index[slot] !== 0) slot = (slot + 1) & this.#mask;
    return slot;
  }

  /** Empties an index slot, moving up every later slot of the run that the hole would hide (backward-shift deletion). */
  #unindex(hole: number): void {
    const index = this.#index;
    const mask = this.#mask;
    index[hole] = 0;
    for (let next = (hole + 1) & mask; index[next] !== 0; next = (next + 1) & mask) {
      const home = hashAt(this.#entries, (index[next]! - 1) * STRIDE) & mask;
      const stays = hole <= next ? hole < home && home <= next : hole < home || home <= next;
      if (stays) continue;
      index[hole] = index[next]!;
      index[next] = 0;
      hole = next;
    }
  }

  /** The entries found since the last settle() first, in the order found (once each), then the rest. */
  #reorder(): void {
    const placed = new Uint8Array(this.#count);
    const entries = this.#entries;
    const found = this.#found!;
    // Laid out anew, and with no more room than a little growth needs.
    const next = new Uint32Array((this.#count + (this.#count >> 3) + 16) * STRIDE);
    let n = 0;
    const place = (at: number) => {
      placed[at] = 1;
      next.set(entries.subarray(at * STRIDE, at * STRIDE + STRIDE), n++ * STRIDE);
    };
    for (let i = 0; i < this.#foundCount; i++) {
      const at = found[i]!;
      if (at < this.#count && placed[at] === 0) place(at);
    }
    for (let at = 0; at < this.#count; at++) if (placed[at] === 0) place(at);
    this.#entries = next;
    this.#lastId = undefined;
    this.#reindex(2 ** Math.ceil(Math.log2(Math.max(32, this.#count * 2))));
  }

  #reindex(size: number): void {
    this.#index = indexOf(size);
    this.#mask = size - 1;
    for (let at = 0; at < this.#count; at++) this.#index[this.#freeSlot(hashAt(this.#entries, at * STRIDE))] = at + 1;
  }
}

const STRIDE = 5;

/** An index of `slots` slots: 16-bit while every position + 1 fits (at most half the slots are used). */
function indexOf(slots: number): Uint16Array | Uint32Array {
  return slots <= 65_536 ? new Uint16Array(slots) : new Uint32Array(slots);
}

function sameWords(entries: Uint32Array, at: number): boolean {
  return entries[at] === WORDS[0] && entries[at + 1] === WORDS[1] && entries[at + 2] === WORDS[2] && entries[at + 3] === WORDS[3];
}

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
