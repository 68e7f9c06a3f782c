import { summarizeConfig } from '../config/summary.ts';
import type { Config } from '../config/config.ts';
import { inspectStore } from '../store/open.ts';
import { type Args, type Command, type Io, readConfig } from './command.ts';

/**
 * `check-config`: validate the file and the environment it references; a
 * summary with secrets masked. `--online`: also ask Cloudflare, once per
 * account, whether its credential may read the summary and the behaviors.
 */
export const checkConfig: Command = {
  options: { online: { type: 'boolean' } },
  async run(args: Args, io: Io) {
    const { config } = readConfig(args, io);
    io.out(summarizeConfig(config));
    const store = await inspectStore(config.state);
    if (store) io.out(store);
    io.out('config is valid');
    if (args.values.online !== true) return 0;
    return (await checkOnline(config, io)) ? 0 : 1;
  },
};

/** One line per account: what its credential may read, or each call refused and why. Nothing is committed. */
async function checkOnline(config: Config, io: Io): Promise<boolean> {
  // Loaded only here: check-config alone stays quick, without the Cloudflare client.
  const [{ CloudflareClient }, { BudgetRegistry }, { systemClock }, { silentLogger }] = await Promise.all([
    import('../cloudflare/client.ts'),
    import('../cloudflare/budget.ts'),
    import('../clock.ts'),
    import('../log.ts'),
  ]);
  const budgets = new BudgetRegistry(config.cloudflare.requestsPer5Min, systemClock);
  let ok = true;
  for (const account of config.accounts) {
    const client = new CloudflareClient({
      baseUrl: config.cloudflare.apiBaseUrl,
      credential: account.credential,
      budget: budgets.for(account.credential.id),
      clock: systemClock,
      log: silentLogger,
      timeoutMs: 15_000,
    });
    const refused = (await Promise.all((['summary', 'behaviors'] as const).map(async (call) => [call, await client.access(account.id, call)] as const))).filter(([, why]) => why !== undefined);
    if (refused.length === 0) io.out(`online: ${account.label}: the summary and the behaviors can be read`);
    for (const [call, why] of refused) io.out(`online: ${account.label}: the ${call} cannot be read: ${why}`);
    ok &&= refused.length === 0;
  }
  io.out(ok ? 'Cloudflare answers every account' : 'Cloudflare refused some reads (above): alerts for those accounts would fail');
  return ok;
}
