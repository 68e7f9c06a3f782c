import type { Config, StateConfig } from '../config/config.ts';
import { SqliteStore } from './sqlite.ts';
import type { StateStore } from './store.ts';

/** Longest an account's lease lasts unrenewed: a dead replica's accounts are taken over this soon, at most. */
const MAX_LEADERSHIP_MS = 30_000;

/**
 * Opens the store the config names: the SQLite file, or the PostgreSQL
 * database replicas share. A lease lasts one poll interval (30 s at most), so
 * a dead replica's accounts are polled again within two intervals. A process
 * `passing` through (`once`) polls only accounts no replica leads, and takes none from them.
 */
export async function openStore(config: Pick<Config, 'state' | 'pollIntervalMs'>, options: { readonly passing?: boolean; readonly warn: (message: string) => void }): Promise<StateStore> {
  const { state } = config;
  const { warn } = options;
  return state.kind === 'sqlite'
    ? SqliteStore.open(state.file, { warn })
    : (await postgres()).open(state.url.reveal(), { leadershipMs: Math.min(config.pollIntervalMs, MAX_LEADERSHIP_MS), passing: options.passing ?? false, warn });
}

/**
 * Opens the store for an operator command (SPEC §3): beside a running daemon,
 * so without the SQLite file's process lock and without joining the replicas
 * of a database; it never polls or drains, only reads and small writes. Only
 * a command that `creates` state (a silence) may make a new SQLite file.
 * `once --dry-run` polls through it too (and commits nothing): it is a whole
 * store, only opened the operator's way.
 */
export async function openOperatorStore(state: StateConfig, options: { readonly creates?: boolean; readonly warn?: (message: string) => void } = {}): Promise<StateStore> {
  return state.kind === 'sqlite'
    ? SqliteStore.open(state.file, { shared: options.creates ? 'write' : 'read', ...(options.warn ? { warn: options.warn } : {}) })
    : (await postgres()).openOperator(state.url.reveal(), options.warn);
}

/** An operator command's use of the store: opened as openOperatorStore does, `body`, then closed whatever happened. */
export async function withOperatorStore<T>(state: StateConfig, body: (store: StateStore) => Promise<T>, options: Parameters<typeof openOperatorStore>[1] = {}): Promise<T> {
  const store = await openOperatorStore(state, options);
  try {
    return await body(store);
  } finally {
    await store.close();
  }
}

/**
 * For check-config: what can be known of the store without changing it, or
 * undefined when there is nothing to ask (a file is checked as it is opened).
 * A database must answer and have no newer schema than this riskwatch knows;
 * throws StateError (one line) when it does not.
 */
export async function inspectStore(state: StateConfig): Promise<string | undefined> {
  if (state.kind === 'sqlite') return undefined;
  const { version, current } = await (await postgres()).inspect(state.url.reveal());
  const schema =
    version === current
      ? `schema version ${version}, current`
      : version === 0
        ? 'no schema yet: the first riskwatch to start creates it'
        : `schema version ${version}: riskwatch migrates it to ${current} at start`;
  return `state database ${state.url.masked} answers; ${schema}`;
}

/** The PostgreSQL store and its driver are loaded only by those who use them (about 10 MB of memory). */
async function postgres(): Promise<typeof import('./postgres.ts').PostgresStore> {
  return (await import('./postgres.ts')).PostgresStore;
}
