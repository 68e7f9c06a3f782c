import type { Dispatcher } from 'undici';
import type { Clock } from '../../clock.ts';
import type { SinkConfig } from '../../config/config.ts';
import type { Sink } from '../sink.ts';
import { ConsoleSink } from './console.ts';
import { EmailSink } from './email.ts';
import { OpsgenieSink } from './opsgenie.ts';
import { PagerDutySink } from './pagerduty.ts';
import { SlackSink } from './slack.ts';
import { TeamsSink } from './teams.ts';
import { WebhookSink } from './webhook.ts';

export interface SinkDeps {
  readonly clock: Clock;
  /** The keep-alive pool for HTTP sinks (undici keeps one pool per origin inside it). */
  readonly dispatcher?: Dispatcher;
  /** Where the console sink writes its lines; stdout when left out. */
  readonly writeLine?: (line: string) => void;
}

/** The one place a sink type becomes a sink: a new sink type is added here and in config/schema.ts. */
export function createSink(config: SinkConfig, deps: SinkDeps): Sink {
  switch (config.type) {
    case 'console':
      return new ConsoleSink(config.name, deps.writeLine);
    case 'slack':
      return new SlackSink(config, deps);
    case 'webhook':
      return new WebhookSink(config, deps);
    case 'teams':
      return new TeamsSink(config, deps);
    case 'email':
      return new EmailSink(config, deps);
    case 'pagerduty':
      return new PagerDutySink(config, deps);
    case 'opsgenie':
      return new OpsgenieSink(config, deps);
  }
}
