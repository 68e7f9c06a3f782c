import type { SnapshotDelta } from './diff.ts';
import { LEVEL_RANK, levelOfRank, type RiskLevel, type RiskUser } from '../model.ts';
import { UserIdMap } from './user-id-map.ts';

/**
 * The stored level of every user of an account, as the diff reads it (a
 * ReadonlyMap), that also marks, read by read, who a summary read showed at
 * that level, so a read need not keep them: at a million users, a poll where
 * 0.1% change should not allocate a million of anything. Each user is one
 * number, their level's rank plus four times the last read that saw them at
 * it, so telling and marking cost one lookup and one write.
 */
export class StoredLevels implements ReadonlyMap<string, RiskLevel> {
  /** User id → rank + 4 × the last read that saw them at that level. */
  readonly #known = new UserIdMap();
  #read = 0;
  #unchanged = 0;
  /** Users per rank (index 1–3), kept as users are put and removed. */
  readonly #perRank = [0, 0, 0, 0];

  constructor(levels: Iterable<readonly [string, RiskLevel]> = []) {
    for (const [id, level] of levels) this.#put(id, LEVEL_RANK[level]);
  }

  /** From ranks (1–3) as a store keeps them, without a round trip through level names. */
  static fromRanks(ranks: Iterable<readonly [string, number]>): StoredLevels {
    return new StoredLevels().addRanks(ranks);
  }

  /** Adds stored users by rank: a store that reads them page by page adds each page. */
  addRanks(ranks: Iterable<readonly [string, number]>): this {
    for (const [id, rank] of ranks) this.#put(id, rank);
    return this;
  }

  /** Users per level, for riskwatch_users{account,level}: counted as they change, not by a walk. */
  levelCounts(): Record<RiskLevel, number> {
    return { low: this.#perRank[1]!, medium: this.#perRank[2]!, high: this.#perRank[3]! };
  }

  #put(id: string, rank: number): void {
    const known = this.#known.get(id);
    if (known !== undefined) this.#perRank[known % 4]!--;
    this.#perRank[rank]!++;
    this.#known.set(id, rank);
  }

  // ReadonlyMap<string, RiskLevel>: what the diff reads.
  get size(): number {
    return this.#known.size;
  }
  get(userId: string): RiskLevel | undefined {
    const known = this.#known.get(userId);
    return known === undefined ? undefined : levelOf(known);
  }
  has(userId: string): boolean {
    return this.#known.has(userId);
  }
  *entries(): MapIterator<[string, RiskLevel]> {
    for (const [id, known] of this.#known.entries()) yield [id, levelOf(known)];
  }
  keys(): MapIterator<string> {
    return this.#known.keys();
  }
  *values(): MapIterator<RiskLevel> {
    for (const [, known] of this.#known.entries()) yield levelOf(known);
  }
  [Symbol.iterator](): MapIterator<[string, RiskLevel]> {
    return this.entries();
  }
  forEach(callback: (value: RiskLevel, key: string, map: ReadonlyMap<string, RiskLevel>) => void): void {
    for (const [id, known] of this.#known.entries()) callback(levelOf(known), id, this);
  }

  /** Follows a commit: the stored levels changed where the delta says. */
  apply(delta: SnapshotDelta): void {
    for (const user of delta.upsertUsers) this.#put(user.user_id, LEVEL_RANK[user.max_risk_level]);
    for (const id of delta.removeUserIds) {
      const known = this.#known.get(id);
      if (known === undefined) continue;
      this.#perRank[known % 4]!--;
      this.#known.delete(id);
    }
  }

  /** A new read of the summary begins: nobody is seen yet. */
  beginRead(): void {
    this.#known.settle();
    this.#read++;
    this.#unchanged = 0;
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
    this.#unchanged++;
    return 'first';
  }

  /** A later record of the same user in this read is not at the stored level after all. */
  unsee(userId: string): void {
    const known = this.#known.get(userId);
    if (known !== undefined && Math.floor(known / 4) === this.#read) {
      this.#known.set(userId, known % 4);
      this.#unchanged--;
    }
  }

  /** Seen at their stored level in this read. */
  seenUnchanged(userId: string): boolean {
    const known = this.#known.get(userId);
    return known !== undefined && Math.floor(known / 4) === this.#read;
  }

  /** How many distinct users this read saw at their stored level. */
  get unchangedCount(): number {
    return this.#unchanged;
  }
}

function levelOf(known: number): RiskLevel {
  return levelOfRank(known % 4);
}
