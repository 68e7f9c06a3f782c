import type { SnapshotDelta } from './diff.ts';
import { LEVEL_RANK, type RiskLevel, type RiskUser } from '../model.ts';

/**
 * Which stored users a summary read showed at their stored level, without
 * collecting them: at a million users, a poll where 0.1% change should not
 * allocate a million of anything. Each known user is one number, their
 * stored level's rank plus four times the last read that saw them at it, so
 * that telling and marking cost one lookup and one write.
 */
export class UnchangedUsers {
  /** User id → rank + 4 × the last read that saw them unchanged. */
  #known = new Map<string, number>();
  #read = 0;
  #count = 0;

  /** Starts from the stored levels (when the store was read). */
  load(levels: ReadonlyMap<string, RiskLevel>): void {
    this.#known = new Map();
    for (const [id, level] of levels) this.#known.set(id, LEVEL_RANK[level]);
  }

  /** Follows a commit: the stored levels changed where the delta says. */
  apply(delta: SnapshotDelta): void {
    for (const user of delta.upsertUsers) this.#known.set(user.user_id, LEVEL_RANK[user.max_risk_level]);
    for (const id of delta.removeUserIds) this.#known.delete(id);
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
    const known = this.#known.get(user.user_id);
    const rank = LEVEL_RANK[user.max_risk_level];
    if (known === undefined || known % 4 !== rank) return 'changed';
    const mark = this.#read * 4 + rank;
    if (known === mark) return 'again';
    this.#known.set(user.user_id, mark);
    this.#count++;
    return 'first';
  }

  /** A later record of the same user in this read is not at the stored level after all. */
  unsee(userId: string): void {
    const known = this.#known.get(userId);
    if (known !== undefined && Math.floor(known / 4) === this.#read) {
      this.#known.set(userId, known % 4);
      this.#count--;
    }
  }

  /** Seen at their stored level in this read. */
  has(userId: string): boolean {
    const known = this.#known.get(userId);
    return known !== undefined && Math.floor(known / 4) === this.#read;
  }

  /** How many distinct users this read saw at their stored level. */
  get count(): number {
    return this.#count;
  }
}
