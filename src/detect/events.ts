import type { Behavior, EventType, RiskEventDetail, RiskLevel, RiskUser } from '../model.ts';
import type { Transition } from './diff.ts';

/**
 * A detected change, as it is stored and announced. `data` is exactly the
 * `data` of the webhook payload (SPEC §5); every sink renders from it.
 */
export type RiskEvent = UserEvent | BehaviorEvent;

interface EventBase {
  /** Unique, fixed when the event is committed: the webhook-id of every attempt. */
  readonly id: string;
  /** When the poll that found the change ran (ISO 8601). */
  readonly timestamp: string;
  /** A change of a user who is flapping (SPEC §9, detect/flapping.ts): recorded, sent to no sink. */
  readonly flapping?: true;
}

/** A user's level changed (or, SPEC §9, they are flapping, or settled again). */
export type UserEvent = LevelChangeEvent | FlappingEvent | SettledEvent;

export interface LevelChangeEvent extends EventBase {
  readonly type: 'user.risk_level_raised' | 'user.risk_level_lowered';
  readonly data: UserEventData;
}

/** The change that made a user flapping: `previous_level`/`current_level` are that change's. */
export interface FlappingEvent extends EventBase {
  readonly type: 'user.flapping';
  readonly data: UserEventData & FlapFields & { readonly changes: number };
}

/** A flapping user with no change for `window`: `previous_level` and `current_level` are both `level`. */
export interface SettledEvent extends EventBase {
  readonly type: 'user.settled';
  readonly data: UserEventData & FlapFields;
}

export interface FlapFields {
  /** The level now (null: not in the summary). */
  readonly level: RiskLevel | null;
  /** notify.flapping.window, as written (`30m`). */
  readonly window: string;
  /** The lowest and highest level the user was at while flapping (null: not in the summary). */
  readonly lowest: RiskLevel | null;
  readonly highest: RiskLevel | null;
}

export interface BehaviorEvent extends EventBase {
  readonly type: Extract<EventType, `behavior.${string}`>;
  readonly data: BehaviorEventData;
}

export interface AccountRef {
  readonly id: string;
  readonly name: string | null;
}

export interface UserEventData {
  readonly account: AccountRef;
  readonly user: Omit<RiskUser, 'max_risk_level'>;
  readonly previous_level: RiskLevel | null;
  readonly current_level: RiskLevel | null;
  /** Present only when enrichment succeeded. */
  readonly risk_events?: readonly RiskEventDetail[];
}

export interface BehaviorEventData {
  readonly account: AccountRef;
  readonly behavior: Behavior;
  readonly previous: { readonly enabled: boolean; readonly risk_level: RiskLevel } | null;
}

export function isUserEvent(event: RiskEvent): event is UserEvent {
  return event.type.startsWith('user.');
}

/**
 * What an event is about, in its account: `<account_id>/user/<user_id>` or
 * `<account_id>/behavior/<id>`. A sink receives the events of one subject in
 * the order they were committed (SPEC §6); an incident receiver keys its
 * incident by it. The stores' migrations spell the same format in SQL.
 */
export function subjectOf(event: RiskEvent): string {
  return isUserEvent(event) ? `${event.data.account.id}/user/${event.data.user.user_id}` : `${event.data.account.id}/behavior/${event.data.behavior.id}`;
}

export interface EventContext {
  readonly account: AccountRef;
  /** When the poll ran, epoch ms. */
  readonly at: number;
  readonly newId: () => string;
  /** The last stored fields of users who left the summary. */
  readonly departedUsers: ReadonlyMap<string, RiskUser>;
  /** Risk events per user id, for the users enrichment reached. */
  readonly riskEvents?: ReadonlyMap<string, readonly RiskEventDetail[]>;
}

/** Turns the transitions of one poll into events, in the same order. */
export function buildEvents(transitions: readonly Transition[], context: EventContext): RiskEvent[] {
  const timestamp = new Date(context.at).toISOString();
  return transitions.map((transition): RiskEvent => {
    if (transition.kind === 'behavior') {
      return {
        id: context.newId(),
        type: transition.type,
        timestamp,
        data: { account: context.account, behavior: transition.behavior, previous: transition.previous },
      };
    }
    const user = transition.user ?? context.departedUsers.get(transition.userId);
    const riskEvents = context.riskEvents?.get(transition.userId);
    return {
      id: context.newId(),
      type: transition.type,
      timestamp,
      data: {
        account: context.account,
        user: {
          user_id: transition.userId,
          email: user?.email ?? '',
          name: user?.name ?? '',
          event_count: user?.event_count ?? 0,
          last_event: user?.last_event ?? null,
        },
        previous_level: transition.previousLevel,
        current_level: transition.currentLevel,
        ...(riskEvents ? { risk_events: riskEvents } : {}),
      },
    };
  });
}
