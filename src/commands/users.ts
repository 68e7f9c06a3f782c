import { RISK_LEVELS, type RiskLevel } from '../model.ts';
import { UsageError } from '../errors.ts';
import { withOperatorStore } from '../store/open.ts';
import { accountFlag, accountName, type Args, type Command, type Io, readConfig, text } from './command.ts';
import { iso, printJson, printTable } from './output.ts';

/** `users [--account A] [--level L] [--json]`: who is at which level now, highest first, since when. */
export const users: Command = {
  options: { account: { type: 'string' }, level: { type: 'string' }, json: { type: 'boolean' } },
  async run(args: Args, io: Io) {
    const { config } = readConfig(args, io);
    const accountId = accountFlag(args, config);
    const level = text(args, 'level');
    if (level !== undefined && !RISK_LEVELS.includes(level as RiskLevel)) throw new UsageError(`--level ${level}: must be one of ${RISK_LEVELS.join(', ')}`);
    const rows = await withOperatorStore(config.state, (store) => store.listUsers({ ...(accountId ? { accountId } : {}), ...(level ? { level: level as RiskLevel } : {}) }));
    const listed = rows.map((u) => ({
      account: { id: u.accountId, name: accountName(config, u.accountId) },
      user_id: u.userId,
      email: u.email,
      name: u.name,
      level: u.level,
      since: iso(u.since),
      flapping: u.flapping,
    }));
    if (args.values.json) printJson(io, listed);
    else
      printTable(
        io,
        ['ACCOUNT', 'EMAIL', 'NAME', 'LEVEL', 'SINCE', 'FLAPPING'],
        listed.map((u) => [u.account.name ?? u.account.id, u.email, u.name, u.level, u.since, u.flapping ? 'yes' : null]),
        'no users',
      );
    return 0;
  },
};
