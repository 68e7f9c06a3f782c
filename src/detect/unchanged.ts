import type { RiskLevel, RiskUser } from '../model.ts';

/**
 * Which stored users a summary read showed at their stored level, without
 * collecting them: at a million users, a poll where 0.1% change should not
 * allocate a million of anything. Each known user carries the number of the
 * last read that saw them unchanged; a new read is a new number.
 */
export class UnchangedUsers {
  #levels: ReadonlyMap<string, RiskLevel> = new Map();
  /** User id → the last read that saw them at their stored level. */
  readonly #seenIn = new Map<string, number>();
  #read = 0;
  #count = 0;

  /** The stored levels the next reads compare with. */
  track(levels: ReadonlyMap<string, RiskLevel>): void {
    this.#levels = levels;
  }

  /** A new read of the summary begins: nobody is seen yet. */
  begin(): void {
    this.#read++;
    this.#count = 0;
  }

  /**
   * The read shows `user`: 'first' when at their stored level and not yet seen
   * in this read, 'again' when already seen so, 'changed' otherwise (new, or
   * another level: the caller keeps the record).
   */
  see(user: RiskUser): 'first' | 'again' | 'changed' {
    if (this.#levels.get(user.user_id) !== user.max_risk_level) return 'changed';
    if (this.#seenIn.get(user.user_id) === this.#read) return 'again';
    this.#seenIn.set(user.user_id, this.#read);
    this.#count++;
    return 'first';
  }

  /** A later record of the same user in this read is not at the stored level after all. */
  unsee(userId: string): void {
    if (this.has(userId)) {
      this.#seenIn.set(userId, this.#read - 1);
      this.#count--;
    }
  }

  /** Seen at their stored level in this read. */
  has(userId: string): boolean {
    return this.#seenIn.get(userId) === this.#read;
  }

  /** How many distinct users this read saw at their stored level. */
  get count(): number {
    return this.#count;
  }

  /** The user left the store. */
  forget(userId: string): void {
    this.#seenIn.delete(userId);
  }
}
