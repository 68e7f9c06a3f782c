import { UsageError } from '../../errors.ts';
import { withOperatorStore } from '../../store/open.ts';
import { MAX_SILENCE_MS, userKey } from '../../store/store.ts';
import { accountFlag, type Args, type Command, durationFlag, type Io, readConfig, text, timeFlag } from '../command.ts';

const { randomBytes } = process.getBuiltinModule('node:crypto');
const os = process.getBuiltinModule('node:os');

/** `silence add (--user U | --behavior ID) [--account A] (--for D | --until T) --reason TEXT [--by NAME]`: prints the silence's id. */
export const add: Command = {
  options: {
    user: { type: 'string' },
    behavior: { type: 'string' },
    account: { type: 'string' },
    for: { type: 'string' },
    until: { type: 'string' },
    reason: { type: 'string' },
    by: { type: 'string' },
  },
  async run(args: Args, io: Io) {
    const user = text(args, 'user')?.trim();
    const behavior = text(args, 'behavior')?.trim();
    if ((user === undefined) === (behavior === undefined)) throw new UsageError('silence add: give --user or --behavior (one of them)');
    if (user === '' || behavior === '') throw new UsageError(`--${user === '' ? 'user' : 'behavior'}: must not be empty`);
    const now = Date.now();
    const forMs = durationFlag(args, 'for');
    const until = timeFlag(args, 'until');
    if ((forMs === undefined) === (until === undefined)) throw new UsageError('silence add: give --for D or --until T (one of them): a silence always ends');
    const endsAt = until ?? now + forMs!;
    if (endsAt <= now) throw new UsageError(`--until ${text(args, 'until')}: is not in the future`);
    const flag = until === undefined ? `--for ${text(args, 'for')}` : `--until ${text(args, 'until')}`;
    if (endsAt - now > MAX_SILENCE_MS) throw new UsageError(`${flag}: a silence lasts at most ${MAX_SILENCE_MS / 86_400_000}d (ten years)`);
    const reason = text(args, 'reason')?.trim();
    if (!reason) throw new UsageError('--reason: required (why is this muted?)');
    const { config } = readConfig(args, io);
    const accountId = accountFlag(args, config) ?? null;
    const id = `sil_${randomBytes(4).toString('hex')}`;
    const silence = { id, user: user === undefined ? null : userKey(user), behavior: behavior ?? null, accountId, startsAt: now, endsAt, reason, by: text(args, 'by')?.trim() || whoRuns() };
    await withOperatorStore(config.state, (store) => store.addSilence(silence), { creates: true });
    io.out(id);
    return 0;
  },
};

/** `login@host` of whoever runs the command. */
function whoRuns(): string {
  let login = process.env.USER ?? process.env.LOGNAME ?? 'unknown';
  try {
    login = os.userInfo().username;
  } catch {
    // No passwd entry (a container's arbitrary uid): the environment's word, or unknown.
  }
  return `${login}@${os.hostname()}`;
}
