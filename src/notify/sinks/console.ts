import type { AccountRef, RiskEvent } from '../../detect/events.ts';
import { levelChange, userVerb } from '../describe.ts';
import { isUserEvent } from '../../detect/events.ts';
import { type DigestEvent, digestText } from '../digest.ts';
import type { Sink } from '../sink.ts';

/** One readable line per event on stdout (SPEC §5): for the demo and for trying a config. */
export class ConsoleSink implements Sink<readonly string[]> {
  readonly name: string;
  readonly grouping = 'event';
  readonly #write: (line: string) => void;

  constructor(name: string, write: (line: string) => void = (line) => process.stdout.write(`${line}\n`)) {
    this.name = name;
    this.#write = write;
  }

  render(events: readonly RiskEvent[]): readonly string[] {
    return events.map(formatEventLine);
  }

  /** A digest (SPEC §9): its title, then a line per account and per user. */
  renderDigest(digest: DigestEvent): readonly string[] {
    const { title, rows } = digestText(digest);
    return [`${digest.timestamp} ${title} (digest ${digest.id})`, ...rows.map((row) => `${row.kind === 'account' ? '  ' : '    '}${row.text}`)];
  }

  renderTest(): readonly string[] {
    return [`${new Date().toISOString()} riskwatch test notification for sink ${this.name}: this sink works`];
  }

  async send(lines: readonly string[]): Promise<void> {
    for (const line of lines) this.#write(line);
  }
}

/** `<time> [account] <type> <what changed> (event <id>)`, one line whatever the API's strings contain. */
export function formatEventLine(event: RiskEvent): string {
  const account = accountLabel(event.data.account);
  let what: string;
  if (isUserEvent(event)) {
    const { user, previous_level, current_level } = event.data;
    const who = user.name ? `${clean(user.name)} <${clean(user.email)}>` : `<${clean(user.email)}>`;
    what = event.type === 'user.flapping' || event.type === 'user.settled' ? `${who} ${userVerb(event)} ${levelChange(event)}` : `${who} ${previous_level ?? 'none'} -> ${current_level ?? 'none'}`;
    if (event.data.risk_events?.length) what += ` (${event.data.risk_events.map((e) => clean(e.name)).join(', ')})`;
  } else {
    const { behavior, previous } = event.data;
    const state = (enabled: boolean, level: string) => `${enabled ? 'enabled' : 'disabled'}, ${level}`;
    what = `${clean(behavior.name)} [${clean(behavior.id)}] ${previous ? `${state(previous.enabled, previous.risk_level)} -> ` : ''}${state(behavior.enabled, behavior.risk_level)}`;
  }
  return `${event.timestamp} [${account}] ${event.type} ${what} (event ${event.id})`;
}

function accountLabel(account: AccountRef): string {
  return clean(account.name ?? account.id);
}

/** Control characters (newlines, terminal escapes, line separators, bidi overrides) from API strings must not break or forge lines. */
function clean(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, '?');
}
