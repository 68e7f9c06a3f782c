import { type Config, isIncidentSink, type SinkConfig } from '../config/config.ts';
import type { Logger } from '../log.ts';
import { LEVEL_RANK, type RiskLevel } from '../model.ts';
import { uncoveredBecause } from '../notify/incident.ts';
import { type IncidentChange, type OpenIncident, type StateStore, subjectParts } from '../store/store.ts';

/** What a config load does to the open incidents it no longer covers: planned first, applied once the daemon that sends the closes is built. */
export interface IncidentPlan {
  readonly changes: readonly IncidentChange[];
  /** Sinks of an old key that closes go to, `<sink>@<credential id>`: the daemon drains them too. */
  readonly retired: readonly SinkConfig[];
  /** Open, uncovered, and no key riskwatch holds can close them: said at each load until resolved by hand. */
  readonly stranded: readonly { readonly incident: OpenIncident; readonly why: string }[];
}

/**
 * On every config load (start, reload, `once`), the incidents sinks opened that
 * the config no longer covers (incident.ts, uncoveredBecause) are closed with the
 * credential they were opened with. An incident whose sink's key changed is
 * closed under the old key and opened under the new one: the user is still at
 * risk, and the alert must not be lost.
 *
 * `held`: sink configs this process still holds besides `config`'s (the config a
 * reload replaces, and sinks kept from earlier reloads). A close with a key only
 * they have goes to a sink of its own, `<sink>@<credential id>`, kept in memory
 * until it is delivered. A close no config riskwatch holds could send (the key
 * changed while it was stopped) is left open, and said (once, as it is opened again under the
 * new key; or at each load, while nothing covers it) to be resolved by hand. A sink renamed with
 * the same key keeps its incidents open, as the renamed sink's.
 */
export async function planIncidentCloses(store: StateStore, config: Config, held: readonly SinkConfig[] = []): Promise<IncidentPlan> {
  const open = await store.listIncidents({});
  const levels = await userLevels(store, open);
  const changes: IncidentChange[] = [];
  const retired = new Map<string, SinkConfig>();
  const stranded: { incident: OpenIncident; why: string }[] = [];
  for (const incident of open) {
    const level = levels.get(incident.subject);
    const why = uncoveredBecause(incident, config, level);
    const sink = config.sinks.find((s) => s.name === incident.sink);
    const current = sink && isIncidentSink(sink) ? sink : undefined;
    // A sink renamed (gone, and another with the same key covers the incident): it stays open, now that one's.
    const heir = sink
      ? undefined
      : config.sinks.find((s) => isIncidentSink(s) && s.credentialId === incident.credentialId && uncoveredBecause({ ...incident, sink: s.name }, config, level) === undefined);
    if (heir) {
      changes.push({ incident, rehome: { sink: heir.name } });
      continue;
    }
    const keyChanged = current !== undefined && current.credentialId !== incident.credentialId;
    if (why === undefined && !keyChanged) continue;
    const note = why ?? `sink ${incident.sink}'s ${current?.type === 'opsgenie' ? 'API key' : 'routing key'} changed`;
    // Opened again under the new key, whether or not the old one can be closed: the user is still at risk.
    const reopen = why === undefined && current ? { credentialId: current.credentialId } : undefined;
    const closer = current && !keyChanged ? current : retiredSink(incident, held);
    if (closer && closer !== current) retired.set(closer.name, closer);
    if (!closer) stranded.push({ incident, why: note });
    if (closer || reopen) changes.push({ incident, ...(closer ? { close: { sink: closer.name, note } } : {}), ...(reopen ? { reopen } : {}) });
  }
  return { changes, retired: [...retired.values()], stranded };
}

/** Queues the plan's closes (and opens again), and says each in the log. */
export async function applyIncidentPlan(store: StateStore, plan: IncidentPlan, log: Logger, now: number): Promise<void> {
  for (const { incident, why } of plan.stranded) {
    log.warn(
      { sink: incident.sink, key: incident.key, credential: incident.credentialId, why },
      `incident ${incident.key} of sink ${incident.sink} is open, but the config no longer covers it (${why}) and no sink riskwatch holds has the key it was opened with (${incident.credentialId}): resolve it by hand`,
    );
  }
  if (plan.changes.length === 0) return;
  const changed = await store.retireIncidents(plan.changes, now);
  for (const { incident, close, reopen } of plan.changes) {
    const about = { sink: incident.sink, key: incident.key, credential: incident.credentialId };
    if (close) log.info({ ...about, closeWith: close.sink, why: close.note }, `closing an incident the config no longer covers: ${close.note}`);
    if (reopen) log.info({ ...about, credential: reopen.credentialId }, `opening incident ${incident.key} again under sink ${incident.sink}'s new key`);
  }
  for (const { incident, rehome } of plan.changes) {
    if (rehome) log.info({ sink: incident.sink, key: incident.key, to: rehome.sink }, `incident ${incident.key} is sink ${rehome.sink}'s now: sink ${incident.sink} was renamed, with the same key`);
  }
  // Fewer: a replica loading the same config closed some first (each is closed once).
  if (changed < plan.changes.length) log.info({ changed, planned: plan.changes.length }, 'some incidents were closed by another process first');
}

/** A sink of `held` with the key `incident` was opened with, as a sink of its own that closes it: `<sink>@<credential id>`. */
function retiredSink(incident: OpenIncident, held: readonly SinkConfig[]): SinkConfig | undefined {
  const name = `${incident.sink}@${incident.credentialId}`;
  const holder = held.find((s) => s.name === name) ?? held.find((s) => isIncidentSink(s) && s.credentialId === incident.credentialId && s.name === incident.sink);
  return holder && { ...holder, name };
}

/**
 * The level each user an open incident is about counts at, by subject (a user no longer listed has
 * none): the level now, or, for a flapping user, the highest they reached while flapping. Their
 * incident follows their flapping story (user.flapping opened it, user.settled leaves it as they
 * settle), not the level they happen to be at when a config is loaded.
 */
async function userLevels(store: StateStore, open: readonly OpenIncident[]): Promise<Map<string, RiskLevel>> {
  const byAccount = new Map<string, string[]>();
  for (const incident of open) {
    const { accountId, kind, id } = subjectParts(incident.subject);
    if (kind === 'user') byAccount.set(accountId, [...(byAccount.get(accountId) ?? []), id]);
  }
  const levels = new Map<string, RiskLevel>();
  for (const [accountId, ids] of byAccount) {
    const flaps = await store.loadFlaps(accountId);
    for (const [id, user] of await store.loadUsers(accountId, ids)) {
      const highest = flaps.get(id)?.flapping?.highest;
      levels.set(`${accountId}/user/${id}`, highest && highest !== 'none' && LEVEL_RANK[highest] > LEVEL_RANK[user.max_risk_level] ? highest : user.max_risk_level);
    }
  }
  return levels;
}
