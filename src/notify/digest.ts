import type { Clock } from '../clock.ts';
import type { AccountConfig, SinkConfig } from '../config/config.ts';
import type { AccountRef } from '../detect/events.ts';
import type { Logger } from '../log.ts';
import type { RiskLevel } from '../model.ts';
import type { StateStore } from '../store/store.ts';
import { oneLine } from './describe.ts';
import { plural } from './limits.ts';

/**
 * Digests (SPEC §9): a sink with `digest: "<cron>"` gets, at each slot, one
 * message listing per account who is at or above its `min_level` and since
 * when, and how many changes the account had since the last digest. A digest
 * is a delivery like any other (outbox, retries); its id is the sink's and
 * the slot's, and the store moves a sink's last slot on only once, so that a
 * restart, a replica or a retry never sends it twice. Slots missed while
 * riskwatch was down are sent as one, the latest, at start.
 */

/** Users listed per account in a digest; the rest are counted (`users_total`). */
export const DIGEST_USERS_PER_ACCOUNT = 100;

export interface DigestUser {
  readonly user_id: string;
  readonly email: string;
  readonly name: string;
  readonly level: RiskLevel;
  /** When the event that brought them to this level was recorded, if it still is. */
  readonly since: string | null;
}

export interface DigestAccount {
  readonly account: AccountRef;
  /** At or above the sink's min_level, highest first; at most DIGEST_USERS_PER_ACCOUNT. */
  readonly users: readonly DigestUser[];
  readonly users_total: number;
  /** Events recorded for the account since the previous digest. */
  readonly changes: number;
}

/** What a digest says: the webhook payload of type `digest`, stored as an event of that type. */
export interface DigestEvent {
  /** `digest/<sink>/<slot>`: the same for every attempt and every process. */
  readonly id: string;
  readonly type: 'digest';
  /** The slot it is for. */
  readonly timestamp: string;
  readonly data: {
    readonly sink: string;
    readonly min_level: RiskLevel;
    /** The previous digest's slot: changes are counted since. */
    readonly since: string;
    readonly accounts: readonly DigestAccount[];
  };
}

export function isDigest(event: { readonly type: string }): event is DigestEvent {
  return event.type === 'digest';
}

const digestId = (sink: string, slot: number) => `digest/${sink}/${new Date(slot).toISOString()}`;

export interface DigestOptions {
  readonly store: StateStore;
  readonly sinks: readonly SinkConfig[];
  readonly accounts: readonly AccountConfig[];
  readonly clock: Clock;
  readonly log: Logger;
}

/** Longest sleep between two looks at the schedules: a wall clock set forward is noticed within it. */
const MAX_SLEEP_MS = 15 * 60_000;
/** After a store that could not answer: the next look. */
const RETRY_MS = 30_000;

/** Sends each digest sink's due slot, once; `run` keeps doing so at every slot. */
export class DigestScheduler {
  readonly #options: DigestOptions;

  constructor(options: DigestOptions) {
    this.#options = options;
  }

  /** Whether any sink has a digest. */
  get any(): boolean {
    return this.#options.sinks.some((sink) => sink.digest !== undefined);
  }

  /**
   * Queues what is due at `now` (wall clock): for each digest sink, its latest
   * slot if not sent yet. A sink's first look records its latest slot without
   * sending (as a first poll is a baseline). Returns how many were queued.
   */
  async due(now: number): Promise<number> {
    const { store, log } = this.#options;
    let queued = 0;
    for (const sink of this.#options.sinks) {
      const slot = sink.digest?.latestAt(now);
      if (slot === undefined) continue;
      const last = await store.lastDigest(sink.name);
      if (last === undefined) {
        await store.commitDigest({ sink: sink.name, at: now, slot, previous: undefined });
        log.info({ sink: sink.name, next: iso(sink.digest!.nextAfter(now)) }, 'digest scheduled: the first goes at the next slot');
        continue;
      }
      if (slot <= last) continue;
      const event = await this.#digest(sink, slot, last);
      const delivery = { sink: sink.name, accountId: '*', eventIds: [event.id], subjects: [`digest/${sink.name}`] };
      if (await store.commitDigest({ sink: sink.name, at: now, slot, previous: last, event, delivery })) {
        queued++;
        const users = event.data.accounts.reduce((n, a) => n + a.users_total, 0);
        log.info({ sink: sink.name, slot: event.timestamp, accounts: event.data.accounts.length, users }, 'digest queued');
      }
    }
    return queued;
  }

  /** `run`: at start (missed slots: one digest), then at every slot, until `signal` aborts. `onQueued` wakes the worker. */
  async run(signal: AbortSignal, onQueued: () => void): Promise<void> {
    const { clock, log } = this.#options;
    while (!signal.aborted) {
      const now = clock.now();
      let failed = false;
      try {
        if ((await this.due(now)) > 0) onQueued();
      } catch (error) {
        if (signal.aborted) return;
        failed = true;
        log.error({ err: (error as Error).message }, `could not queue the due digests; trying again in ${RETRY_MS / 1000} s`);
      }
      const next = Math.min(...this.#options.sinks.map((sink) => sink.digest?.nextAfter(now) ?? Number.POSITIVE_INFINITY));
      try {
        await clock.sleep(Math.max(1000, Math.min(next - clock.now(), failed ? RETRY_MS : MAX_SLEEP_MS)), signal);
      } catch {
        return;
      }
    }
  }

  async #digest(sink: SinkConfig, slot: number, since: number): Promise<DigestEvent> {
    const accounts = this.#options.accounts.filter((a) => !sink.accounts || sink.accounts.has(a.id));
    // Changes between the previous slot and this one: a digest sent late counts none twice.
    const facts = await this.#options.store.digestFacts({ accountIds: accounts.map((a) => a.id), minLevel: sink.minLevel, since, until: slot, limit: DIGEST_USERS_PER_ACCOUNT });
    return {
      id: digestId(sink.name, slot),
      type: 'digest',
      timestamp: new Date(slot).toISOString(),
      data: {
        sink: sink.name,
        min_level: sink.minLevel,
        since: new Date(since).toISOString(),
        accounts: accounts.map((account) => {
          const fact = facts.get(account.id);
          return {
            account: { id: account.id, name: account.name ?? null },
            users: (fact?.users ?? []).map((u) => ({ user_id: u.userId, email: u.email, name: u.name, level: u.level, since: iso(u.since ?? undefined) })),
            users_total: fact?.total ?? 0,
            changes: fact?.changes ?? 0,
          };
        }),
      },
    };
  }
}

function iso(ms: number | undefined): string | null {
  return ms === undefined ? null : new Date(ms).toISOString();
}

/** One line of a digest as every sink says it: an account's heading, a user, or how many more were left out. */
export interface DigestRow {
  readonly kind: 'account' | 'user' | 'more';
  /** Plain text: each sink escapes it for its format; every string from the API on one line. */
  readonly text: string;
  readonly level?: RiskLevel;
}

/** A digest as words: its title and its rows, accounts in config order, each followed by its users (highest first). */
export function digestText(digest: DigestEvent): { readonly title: string; readonly rows: readonly DigestRow[]; readonly users: number } {
  const { sink, min_level: min, since, accounts } = digest.data;
  const users = accounts.reduce((n, a) => n + a.users_total, 0);
  const title = `riskwatch digest for ${sink}: ${plural(users, 'user')} at ${min} or above in ${plural(accounts.length, 'account')}`;
  const rows: DigestRow[] = [];
  for (const { account, users: listed, users_total: total, changes } of accounts) {
    const label = oneLine(account.name ?? account.id);
    rows.push({ kind: 'account', text: `${label}: ${plural(total, 'user')} at ${min} or above · ${plural(changes, 'change')} since ${since}` });
    for (const user of listed) {
      const who = oneLine(user.name ? `${user.name} <${user.email}>` : user.email);
      rows.push({ kind: 'user', level: user.level, text: `${who} · ${user.level}${user.since ? ` since ${user.since}` : ''}` });
    }
    if (total > listed.length) rows.push({ kind: 'more', text: `…and ${total - listed.length} more in ${label}` });
  }
  return { title, rows, users };
}
