import type { EventType, RiskLevel } from '../model.ts';
import type { Secret } from './secret.ts';

/**
 * The validated, frozen configuration every other module receives.
 * Nothing outside `config/` reads the YAML file or `process.env`.
 */
export interface Config {
  /** Absolute path of the file this came from. */
  readonly file: string;
  readonly cloudflare: {
    readonly apiBaseUrl: string;
    readonly requestsPer5Min: number;
    /** `auto` reads the summary page by page; `off` takes one answer as all of it (SPEC §1). */
    readonly summaryPaging: 'auto' | 'off';
  };
  readonly accounts: readonly AccountConfig[];
  readonly pollIntervalMs: number;
  readonly firstRun: 'baseline' | 'notify';
  readonly notify: {
    readonly lowered: boolean;
    readonly enrich: boolean;
    /** How long a failing delivery is retried before it is dead-lettered. */
    readonly maxAgeMs: number;
  };
  /** Where state lives: an SQLite file (absolute path), or a PostgreSQL database shared by replicas. */
  readonly state: StateConfig;
  readonly sinks: readonly SinkConfig[];
  /** Where `run` serves /healthz, /readyz and /metrics. */
  readonly http: { readonly listen: { readonly host: string; readonly port: number } };
  readonly log: { readonly level: string; readonly format: 'json' | 'pretty' };
}

export type StateConfig = { readonly kind: 'sqlite'; readonly file: string } | { readonly kind: 'postgres'; readonly url: Secret };

/** How riskwatch authenticates to Cloudflare; `id` names it in logs without revealing it. */
export type Credential =
  | { readonly scheme: 'token'; readonly id: string; readonly token: Secret }
  | { readonly scheme: 'key'; readonly id: string; readonly email: string; readonly key: Secret };

export interface AccountConfig {
  readonly id: string;
  readonly name: string | undefined;
  /** The name when given, else the id: what notifications and logs show. */
  readonly label: string;
  readonly credential: Credential;
}

interface SinkRouting {
  readonly name: string;
  /** User events below this level (after the change) skip the sink. */
  readonly minLevel: RiskLevel;
  /** Event types the sink receives; undefined means all. */
  readonly events: ReadonlySet<EventType> | undefined;
  /** Account ids the sink receives; undefined means all. */
  readonly accounts: ReadonlySet<string> | undefined;
}

export interface ConsoleSinkConfig extends SinkRouting {
  readonly type: 'console';
}

export interface SlackSinkConfig extends SinkRouting {
  readonly type: 'slack';
  readonly url: Secret;
  /** Slack mentions put at the top of every message of this sink: the only way a mention gets in. */
  readonly mention: string | undefined;
}

export interface WebhookSinkConfig extends SinkRouting {
  readonly type: 'webhook';
  readonly url: Secret;
  readonly secret: Secret | undefined;
  /** Extra request headers; values are secrets (they often carry auth). */
  readonly headers: Readonly<Record<string, Secret>>;
}

export type SinkConfig = ConsoleSinkConfig | SlackSinkConfig | WebhookSinkConfig;
