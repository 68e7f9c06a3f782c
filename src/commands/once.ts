import { assemble } from '../daemon/assemble.ts';
import { pruneHistory } from '../daemon/daemon.ts';
import { applyIncidentPlan, planIncidentCloses } from '../daemon/incidents.ts';
import { configuredLogger, type Logger } from '../log.ts';
import { formatEventLine } from '../notify/sinks/console.ts';
import { openOperatorStore, openStore } from '../store/open.ts';
import type { Config } from '../config/config.ts';
import { applySilences, type PollCommit, type StateStore } from '../store/store.ts';
import { type Args, type Command, type Io, readConfig } from './command.ts';

/**
 * `once`: one poll of every account, deliver what is due, exit 0 (or 1 on a
 * failure). `--dry-run`: poll, print what would be announced and to which
 * sinks, and commit and send nothing.
 */
export const once: Command = {
  options: { 'dry-run': { type: 'boolean' } },
  async run(args: Args, io: Io) {
    const { config } = readConfig(args, io);
    const dryRun = args.values['dry-run'] === true;
    // A dry run opens the state as an operator command does: beside a running daemon, and no replica.
    // Before the first run there is no state file: it is made empty (as the first run's diff expects).
    const base = await configuredLogger(config.log);
    const warn = (message: string) => base.warn(message);
    const store = dryRun ? await openOperatorStore(config.state, { creates: true, warn }) : await openStore(config, { passing: true, warn });
    const log = store.replica === undefined ? base : base.child({ replica: store.replica });
    try {
      if (dryRun) return await dryRunOnce(config, store, log, io);
      // A config load: incidents it no longer covers are closed (with the keys it has), then sent with the rest.
      await applyIncidentPlan(store, await planIncidentCloses(store, config), log, Date.now());
      const daemon = await assemble(config, { store, log });
      const ok = await daemon.runOnce();
      await daemon.stop();
      await pruneHistory(store, config.state.historyMs, Date.now());
      return ok ? 0 : 1;
    } finally {
      await store.close();
    }
  },
};

/**
 * The poll as `once` does it, against a store whose commit only records what
 * it was given (and which records no poll failure either): the events and the
 * deliveries routed for them (silences applied as the store would), printed
 * one line each. Nothing is sent: the outbox is not drained.
 */
async function dryRunOnce(config: Config, store: StateStore, log: Logger, io: Io): Promise<number> {
  const commits: PollCommit[] = [];
  const recording = new Proxy(store, {
    get(target, property) {
      if (property === 'commitPoll') {
        return async (commit: PollCommit) => {
          commits.push(commit);
          return commit.expectedVersion + 1;
        };
      }
      if (property === 'recordPollFailure') return async () => {};
      // Every account is polled, whoever leads it: nothing is committed, so a running replica is not disturbed.
      if (property === 'lead') return async (ids: readonly string[]) => new Set(ids);
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  const daemon = await assemble(config, { store: recording, log, writeLine: () => {} });
  const ok = await daemon.runOnce({ deliver: false });
  await daemon.stop();
  const silences = await store.listSilences({ all: false, now: Date.now() });
  let count = 0;
  for (const commit of commits) {
    const { silencedBy, deliveries } = applySilences(commit.events, commit.deliveries, silences);
    // Each event's sinks, in one pass over the deliveries (a first run may plan one per user per sink).
    const sinksOf = new Map<string, Set<string>>();
    for (const d of deliveries) for (const id of d.eventIds) sinksOf.set(id, (sinksOf.get(id) ?? new Set()).add(d.sink));
    for (const event of commit.events) {
      const sinks = [...(sinksOf.get(event.id) ?? [])];
      const silence = silencedBy.get(event.id);
      const to = sinks.length > 0 ? `to ${sinks.join(', ')}` : 'to no sink';
      io.out(`${formatEventLine(event)} -> ${silence ? `silenced by ${silence}${sinks.length > 0 ? `, still ${to}` : ''}` : to}`);
      count++;
    }
  }
  io.out(`dry run: ${count} event${count === 1 ? '' : 's'} in ${commits.length} account${commits.length === 1 ? '' : 's'} polled; nothing committed, nothing sent`);
  return ok ? 0 : 1;
}
