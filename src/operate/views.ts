import { type Config, isIncidentSink } from '../config/config.ts';
import type { EventType } from '../model.ts';
import type { OperatorStore, UserQuery } from '../store/store.ts';

/**
 * What an operator sees, in the JSON shapes of SPEC §8: one function per
 * view, read from the store, shared by the commands (`status --json`), the
 * web console's pages and /api/. A field added here shows in all three.
 */

/** RFC 3339 to the second, or null: how a time is shown. */
export function iso(ms: number | null | undefined): string | null {
  return ms === null || ms === undefined ? null : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** An account's name as configured, or null. */
export function accountName(config: Config, id: string): string | null {
  return config.accounts.find((a) => a.id === id)?.name ?? null;
}

/** `status --json`: each configured account and sink, and sinks no longer configured that still hold deliveries. */
export async function statusView(config: Config, store: OperatorStore, now: number) {
  const stored = await store.status(now);
  const accounts = config.accounts.map((account) => {
    const known = stored.accounts.find((a) => a.id === account.id);
    return {
      id: account.id,
      name: account.name ?? null,
      last_success_at: iso(known?.lastSuccessAt),
      last_error: known?.lastError ?? null,
      last_error_at: iso(known?.lastErrorAt),
      users: known?.users ?? { low: 0, medium: 0, high: 0 },
      leader: known?.leader ?? null,
      flapping: known?.flapping ?? 0,
    };
  });
  const sinks = config.sinks.map((sink) => {
    const known = stored.sinks.find((s) => s.name === sink.name);
    return { name: sink.name, type: sink.type as string | null, configured: true, pending: known?.pending ?? 0, dead: known?.dead ?? 0, held_until: iso(known?.heldUntil) };
  });
  // A sink renamed or removed whose deliveries are still stored: nobody sends them (deliveries retry --to moves them).
  for (const known of stored.sinks) {
    if (known.pending + known.dead === 0 || config.sinks.some((s) => s.name === known.name)) continue;
    sinks.push({ name: known.name, type: null, configured: false, pending: known.pending, dead: known.dead, held_until: iso(known.heldUntil) });
  }
  return { accounts, sinks, silences: stored.silences };
}

export type StatusView = Awaited<ReturnType<typeof statusView>>;

/** `users --json`: who is at which level now, highest first; a page of them when `limit` is given. */
export async function usersView(config: Config, store: OperatorStore, query: UserQuery) {
  const rows = await store.listUsers(query);
  return rows.map((u) => ({
    account: { id: u.accountId, name: accountName(config, u.accountId) },
    user_id: u.userId,
    email: u.email,
    name: u.name,
    level: u.level,
    since: iso(u.since),
    flapping: u.flapping,
  }));
}

export type UserView = Awaited<ReturnType<typeof usersView>>[number];

/** `events --json`: the webhook payload of each recorded event, newest first, with its id and the silence that muted it. */
export async function eventsView(store: OperatorStore, query: { readonly since: number; readonly limit: number; readonly accountId?: string; readonly user?: string; readonly type?: EventType }) {
  const rows = await store.listEvents(query);
  return rows.map(({ event, silenced }) => ({ type: event.type, timestamp: event.timestamp, data: event.data, id: event.id, silenced, flapping: event.flapping === true }));
}

export type EventView = Awaited<ReturnType<typeof eventsView>>[number];

/** `silence list --json`: the active silences, or `all` still kept. */
export async function silencesView(store: OperatorStore, query: { readonly all: boolean; readonly now: number }) {
  const silences = await store.listSilences(query);
  return silences.map((s) => ({
    id: s.id,
    user: s.user,
    behavior: s.behavior,
    account: s.accountId,
    starts_at: iso(s.startsAt),
    ends_at: iso(s.endsAt),
    reason: s.reason,
    by: s.by,
    active: s.startsAt <= query.now && query.now < s.endsAt,
  }));
}

export type SilenceView = Awaited<ReturnType<typeof silencesView>>[number];

/** `deliveries --json`: the outbox (pending and dead letters), or every delivery of some events. */
export async function deliveriesView(store: OperatorStore, query: Parameters<OperatorStore['listDeliveries']>[0]) {
  const rows = await store.listDeliveries(query);
  return rows.map((d) => ({
    id: d.id,
    sink: d.sink,
    account: d.accountId,
    state: d.state,
    event_ids: d.eventIds,
    types: d.types,
    attempts: d.attempts,
    last_error: d.lastError,
    next_attempt_at: iso(d.nextAttemptAt),
    created_at: iso(d.createdAt),
    finished_at: iso(d.finishedAt),
  }));
}

export type DeliveryView = Awaited<ReturnType<typeof deliveriesView>>[number];

/** `incidents --json`: what PagerDuty and Opsgenie sinks opened and riskwatch has not closed, oldest first. */
export async function incidentsView(config: Config, store: OperatorStore, query: { readonly sink?: string }) {
  const open = await store.listIncidents(query);
  return open.map((i) => {
    const configured = config.sinks.find((s) => s.name === i.sink);
    return {
      sink: i.sink,
      key: i.key,
      account: { id: i.accountId, name: accountName(config, i.accountId) },
      subject: i.subject,
      credential: i.credentialId,
      configured: configured !== undefined && isIncidentSink(configured) && configured.credentialId === i.credentialId,
      opened_at: iso(i.openedAt),
      event_id: i.eventId,
      trigger: i.trigger,
    };
  });
}

/**
 * One user's story, for the console's timeline and /api/: the user as listed now (undefined when
 * riskwatch does not know them), their recorded events newest first (within the history kept, at
 * most `limit`), and every delivery of those events with its outcome.
 */
export async function timelineView(config: Config, store: OperatorStore, accountId: string, userId: string, now: number, limit = 200) {
  const [user] = await usersView(config, store, { accountId, userId });
  const events = await eventsView(store, { since: now - config.state.historyMs, accountId, user: userId, limit });
  const deliveries = events.length === 0 ? [] : await deliveriesView(store, { accountId, eventIds: events.map((e) => e.id) });
  return { user, events, deliveries };
}
