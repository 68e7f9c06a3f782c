import { isIncidentSink, type SinkConfig } from '../config/config.ts';
import { isUserEvent, type RiskEvent, subjectOf } from '../detect/events.ts';
import { type EventType, LEVEL_RANK } from '../model.ts';
import type { PlannedDelivery } from '../store/store.ts';
import type { Sink } from './sink.ts';

/**
 * Decides, once, when a poll commits, which sinks get which of its events
 * (SPEC §4 `min_level`, `events`, `accounts`; SPEC §2 `notify.lowered`), and
 * how they are grouped.
 */
export function routeEvents(
  accountId: string,
  events: readonly RiskEvent[],
  sinks: readonly { readonly config: SinkConfig; readonly sink: Pick<Sink, 'grouping' | 'accepts' | 'incident'> }[],
  options: RouteOptions,
): PlannedDelivery[] {
  const planned: PlannedDelivery[] = [];
  // A change of a flapping user is recorded and sent nowhere (SPEC §9).
  const announced = events.filter((event) => !event.flapping);
  for (const { config, sink } of sinks) {
    if (config.accounts && !config.accounts.has(accountId)) continue;
    // What closes an incident of the sink goes whatever its `events` say: nothing else would close it.
    const wanted = announced.filter((event) => (wants(config, event, options) || sink.incident?.(event)?.action === 'close') && (sink.accepts?.(event) ?? true));
    if (wanted.length === 0) continue;
    if (sink.grouping === 'poll') {
      planned.push(plannedDelivery(config.name, accountId, wanted));
    } else {
      for (const event of wanted) {
        const step = sink.incident?.(event);
        planned.push(plannedDelivery(config.name, accountId, [event], step && isIncidentSink(config) ? { ...step, credentialId: config.credentialId } : undefined));
      }
    }
  }
  return planned;
}

/**
 * A sink whose `events` take a user's rises also takes their flapping story (SPEC §9: it goes
 * where a rise would), and one that takes rises or drops takes their settling: a list written
 * before flapping existed does not go quiet in the middle of a story.
 */
function carriesOn(events: ReadonlySet<EventType>, type: EventType): boolean {
  if (type === 'user.flapping') return events.has('user.risk_level_raised');
  if (type === 'user.settled') return events.has('user.risk_level_raised') || events.has('user.risk_level_lowered') || events.has('user.flapping');
  return false;
}

/** A delivery of `events` to `sink`, with the subjects its order is kept by, and what it does to an incident of the sink. */
export function plannedDelivery(sink: string, accountId: string, events: readonly RiskEvent[], incident?: PlannedDelivery['incident']): PlannedDelivery {
  return { sink, accountId, eventIds: events.map((e) => e.id), subjects: [...new Set(events.map(subjectOf))], ...(incident ? { incident } : {}) };
}

export interface RouteOptions {
  /** `notify.lowered`: drops go to chat, webhook and email sinks too. Incident sinks get them always, to resolve what they opened. */
  readonly lowered: boolean;
}

function wants(config: SinkConfig, event: RiskEvent, options: RouteOptions): boolean {
  if (config.events && !config.events.has(event.type) && !carriesOn(config.events, event.type)) return false;
  if (!isUserEvent(event)) return true;
  if (event.type === 'user.risk_level_lowered' && !options.lowered && !isIncidentSink(config)) return false;
  // A flapping user (SPEC §9) goes where a rise to the highest level they were at would go, and so
  // does their settling: every sink told they were flapping is told they settled, whatever the level.
  if (event.type === 'user.flapping' || event.type === 'user.settled') return LEVEL_RANK[event.data.highest ?? 'none'] >= LEVEL_RANK[config.minLevel];
  // The level a user event is about: the new one for a rise; for a drop, the one the user
  // is leaving, so that a sink which got the rise also gets the all-clear.
  const { previous_level: before, current_level: after } = event.data;
  const level = Math.max(LEVEL_RANK[before ?? 'none'], LEVEL_RANK[after ?? 'none']);
  return level >= LEVEL_RANK[config.minLevel];
}
