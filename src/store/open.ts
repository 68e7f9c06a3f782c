import type { Config, StateConfig } from '../config/config.ts';
import { PostgresStore } from './postgres.ts';
import { SqliteStore } from './sqlite.ts';
import type { StateStore } from './store.ts';

/** Longest an account's lease lasts unrenewed: a dead replica's accounts are taken over this soon, at most. */
const MAX_LEADERSHIP_MS = 30_000;

/**
 * Opens the store the config names: the SQLite file, or the PostgreSQL
 * database replicas share. A lease lasts one poll interval (30 s at most), so
 * a dead replica's accounts are polled again within two intervals.
 */
export async function openStore(config: Pick<Config, 'state' | 'pollIntervalMs'>): Promise<StateStore> {
  const { state } = config;
  return state.kind === 'sqlite'
    ? SqliteStore.open(state.file)
    : PostgresStore.open(state.url.reveal(), { leadershipMs: Math.min(config.pollIntervalMs, MAX_LEADERSHIP_MS) });
}

/**
 * For check-config: what can be known of the store without changing it. A
 * database must answer and have no newer schema than this riskwatch knows;
 * throws StateError (one line) when it does not.
 */
export async function inspectStore(state: StateConfig): Promise<string> {
  if (state.kind === 'sqlite') return `state: sqlite ${state.file} (opened at start)`;
  const { version, current } = await PostgresStore.inspect(state.url.reveal());
  const schema = version === current ? `schema version ${version}, current` : version === 0 ? 'empty: the first riskwatch to start creates the schema' : `schema version ${version}: riskwatch migrates it to ${current} at start`;
  return `state: postgres ${state.url.masked} reachable; ${schema}`;
}
