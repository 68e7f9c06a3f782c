import { flagLabel, SILENCE_FIELDS, silenceInput } from '../../operate/input.ts';
import { withOperatorStore } from '../../store/open.ts';
import { type Args, type Command, type Io, readConfig, text } from '../command.ts';

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
    const { config } = readConfig(args, io);
    const request = Object.fromEntries(SILENCE_FIELDS.map((key) => [key, text(args, key)]));
    const silence = silenceInput(request, flagLabel, config, Date.now(), whoRuns);
    await withOperatorStore(config.state, (store) => store.addSilence(silence), { creates: true });
    io.out(silence.id);
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
