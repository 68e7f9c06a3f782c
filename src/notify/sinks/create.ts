import type { Clock } from '../../clock.ts';
import type { SinkConfig } from '../../config/config.ts';
import type { Http } from '../../http.ts';
import type { Sink } from '../sink.ts';

export interface SinkDeps {
  readonly clock: Clock;
  /** The keep-alive pool for HTTP sinks (one pool per origin inside it). */
  readonly http?: Http;
  /** Where the console sink writes its lines; stdout when left out. */
  readonly writeLine?: (line: string) => void;
}

/**
 * The one place a sink type becomes a sink: a new sink type is added here and
 * in config/schema.ts. Each type's module (and its library: nodemailer,
 * @slack/webhook) is imported only when a sink of that type is configured, so
 * a sink nobody uses costs no start-up time and no memory (issue 17).
 */
export async function createSink(config: SinkConfig, deps: SinkDeps): Promise<Sink> {
  switch (config.type) {
    case 'console':
      return new (await import('./console.ts')).ConsoleSink(config.name, deps.writeLine);
    case 'slack':
      return new (await import('./slack.ts')).SlackSink(config, deps);
    case 'webhook':
      return new (await import('./webhook.ts')).WebhookSink(config, deps);
    case 'teams':
      return new (await import('./teams.ts')).TeamsSink(config, deps);
    case 'email':
      return new (await import('./email.ts')).EmailSink(config, deps);
    case 'pagerduty':
      return new (await import('./pagerduty.ts')).PagerDutySink(config, deps);
    case 'opsgenie':
      return new (await import('./opsgenie.ts')).OpsgenieSink(config, deps);
  }
}
