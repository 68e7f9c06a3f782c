import type { Command } from './command.ts';

/**
 * Every command, by the words that name it: its usage line, what it does, and
 * how to load it. A command's module is imported only when it runs, so that
 * `status` loads neither the daemon nor the HTTP client.
 */
export interface Entry {
  readonly usage: string;
  readonly summary: string;
  readonly load: () => Promise<Command>;
}

export const COMMANDS: Readonly<Record<string, Entry>> = {
  run: { usage: 'run', summary: 'poll every account every poll_interval and deliver alerts (the daemon)', load: async () => (await import('./run.ts')).run },
  once: {
    usage: 'once [--dry-run]',
    summary: 'poll every account once, deliver what is pending, exit 0 (or 1 on a failure); --dry-run: print what would be announced, commit and send nothing',
    load: async () => (await import('./once.ts')).once,
  },
  'check-config': {
    usage: 'check-config [--online]',
    summary: 'validate the config and print a summary with secrets masked; --online: ask Cloudflare whether each account can be read',
    load: async () => (await import('./check-config.ts')).checkConfig,
  },
  'test-sinks': {
    usage: 'test-sinks [--sink NAME] [--sample]',
    summary: 'send one marked test notification to each sink; --sample: a realistic, marked sample alert (not to PagerDuty or Opsgenie)',
    load: async () => (await import('./test-sinks.ts')).testSinks,
  },
  simulate: {
    usage: 'simulate [--port N]',
    summary: "the demo's simulated API alone, on loopback, printing its URL, account id and a config snippet (try a config without credentials)",
    load: async () => (await import('./simulate.ts')).simulate,
  },
  demo: { usage: 'demo', summary: 'run against a built-in simulated API with a console sink (no config needed)', load: async () => (await import('./demo.ts')).demo },
  status: { usage: 'status [--json]', summary: 'accounts, sinks and silences, from the state', load: async () => (await import('./status.ts')).status },
  users: { usage: 'users [--account A] [--level L] [--json]', summary: 'who is at which level now, and since when', load: async () => (await import('./users.ts')).users },
  events: {
    usage: 'events [--since D] [--account A] [--user U] [--type T] [--limit N] [--json]',
    summary: 'the recorded events, newest first (default: the last 24h, 100)',
    load: async () => (await import('./events.ts')).events,
  },
  'silence add': {
    usage: 'silence add (--user U | --behavior ID) [--account A] (--for D | --until T) --reason TEXT [--by NAME]',
    summary: "mute a user's or a behavior's events until it ends; prints its id",
    load: async () => (await import('./silence/add.ts')).add,
  },
  'silence list': { usage: 'silence list [--all] [--json]', summary: 'the active (or all) silences', load: async () => (await import('./silence/list.ts')).list },
  'silence expire': { usage: 'silence expire ID', summary: 'end a silence now', load: async () => (await import('./silence/expire.ts')).expire },
  incidents: {
    usage: 'incidents [--sink NAME] [--json]',
    summary: 'the PagerDuty and Opsgenie incidents riskwatch opened and has not closed',
    load: async () => (await import('./incidents.ts')).incidents,
  },
  deliveries: {
    usage: 'deliveries [--sink S] [--state pending|dead] [--json]',
    summary: 'the pending and dead-lettered deliveries',
    load: async () => (await import('./deliveries/list.ts')).list,
  },
  'deliveries retry': {
    usage: 'deliveries retry (--sink S [--to NEW] | --id N...)',
    summary: "make dead-lettered deliveries pending again, under their old ids; --to moves a renamed or removed sink's to NEW",
    load: async () => (await import('./deliveries/retry.ts')).retry,
  },
};
