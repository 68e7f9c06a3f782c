import type { Clock } from '../../clock.ts';
import type { TeamsSinkConfig } from '../../config/config.ts';
import type { RiskEvent } from '../../detect/events.ts';
import type { Http } from '../../http.ts';
import type { DigestEvent } from '../digest.ts';
import type { Sink } from '../sink.ts';
import { urlSecrets } from './http-errors.ts';
import { postJson } from './post.ts';
import { renderTeams, renderTeamsDigest, renderTeamsTest, type TeamsMessage } from './teams-render.ts';

/**
 * Microsoft Teams through a Power Automate Workflows webhook (SPEC §5): one
 * Adaptive Card per account per poll. Any 2xx is accepted (usually 202: the
 * flow queued it), 408/429/5xx are retried honouring Retry-After, other
 * statuses are permanent (post.ts). The URL carries its credential (`sig`)
 * and is used only here, at the last moment; its host is not checked, as
 * Microsoft has moved it before.
 */
export class TeamsSink implements Sink<TeamsMessage> {
  readonly name: string;
  readonly grouping = 'poll';
  readonly #config: TeamsSinkConfig;
  readonly #clock: Clock;
  readonly #http: Http | undefined;

  constructor(config: TeamsSinkConfig, deps: { clock: Clock; http?: Http }) {
    this.name = config.name;
    this.#config = config;
    this.#clock = deps.clock;
    this.#http = deps.http;
  }

  render(events: readonly RiskEvent[]): TeamsMessage {
    return renderTeams(events);
  }

  renderDigest(digest: DigestEvent): TeamsMessage {
    return renderTeamsDigest(digest);
  }

  renderTest(): TeamsMessage {
    return renderTeamsTest(this.name);
  }

  async send(message: TeamsMessage, signal: AbortSignal): Promise<void> {
    const body = JSON.stringify(message.payload);
    const url = this.#config.url.reveal();
    await postJson({ sink: this.name, url, body, signal, clock: this.#clock, http: this.#http, redact: urlSecrets(url) });
  }
}
