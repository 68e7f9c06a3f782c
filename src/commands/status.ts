import { withOperatorStore } from '../store/open.ts';
import { type Args, type Command, type Io, readConfig } from './command.ts';
import { iso, printJson, printTable } from './output.ts';

/** `status [--json]`: accounts, sinks and silences, from the store (SPEC §3, §8). */
export const status: Command = {
  options: { json: { type: 'boolean' } },
  async run(args: Args, io: Io) {
    const { config } = readConfig(args, io);
    const stored = await withOperatorStore(config.state, (store) => store.status(Date.now()));
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
    if (args.values.json) {
      printJson(io, { accounts, sinks, silences: stored.silences });
      return 0;
    }
    printTable(
      io,
      ['ACCOUNT', 'LAST SUCCESS', 'HIGH', 'MEDIUM', 'LOW', 'FLAPPING', 'LEADER', 'LAST ERROR'],
      accounts.map((a) => [a.name ?? a.id, a.last_success_at ?? 'never', a.users.high, a.users.medium, a.users.low, a.flapping, a.leader, a.last_error && `${a.last_error_at}: ${a.last_error}`]),
      'no accounts configured',
    );
    io.out('');
    printTable(
      io,
      ['SINK', 'TYPE', 'PENDING', 'DEAD', 'HELD UNTIL'],
      sinks.map((s) => [s.name, s.type ?? 'not configured', s.pending, s.dead, s.held_until]),
      'no sinks configured',
    );
    io.out('');
    io.out(`active silences: ${stored.silences}`);
    return 0;
  },
};
