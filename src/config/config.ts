import type { EventType, RiskLevel } from '../model.ts';
import type { Secret } from './secret.ts';
import type { Schedule } from './schedule.ts';

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
    /** SPEC §9: `changes` level changes within `windowMs` make a user flapping; undefined: off. */
    readonly flapping: FlappingRules | undefined;
  };
  /** Where state lives: an SQLite file (absolute path), or a PostgreSQL database shared by replicas. */
  readonly state: StateConfig;
  readonly sinks: readonly SinkConfig[];
  /** Where `run` serves /healthz, /readyz and /metrics. */
  readonly http: {
    readonly listen: { readonly host: string; readonly port: number };
    /** Serve the web console and /api/ (SPEC §10). */
    readonly console: boolean;
    /** What the console and /api/ ask for; required for a console on a non-loopback listen. */
    readonly token: Secret | undefined;
  };
  readonly log: { readonly level: string; readonly format: 'json' | 'pretty' };
}

export interface FlappingRules {
  readonly changes: number;
  readonly windowMs: number;
}

export type StateConfig = ({ readonly kind: 'sqlite'; readonly file: string } | { readonly kind: 'postgres'; readonly url: Secret }) & {
  /** How long recorded events are kept (state.history). */
  readonly historyMs: number;
};

/** How riskwatch authenticates to Cloudflare; `id` names it in logs without revealing it. */
export type Credential = { readonly scheme: 'token'; readonly id: string; readonly token: Secret } | { readonly scheme: 'key'; readonly id: string; readonly email: string; readonly key: Secret };

export interface AccountConfig {
  readonly id: string;
  readonly name: string | undefined;
  /** The name when given, else the id: what notifications and logs show. */
  readonly label: string;
  readonly credential: Credential;
}

export interface SinkRouting {
  readonly name: string;
  /** User events below this level (after the change) skip the sink. */
  readonly minLevel: RiskLevel;
  /** Event types the sink receives; undefined means all. */
  readonly events: ReadonlySet<EventType> | undefined;
  /** Account ids the sink receives; undefined means all. */
  readonly accounts: ReadonlySet<string> | undefined;
  /** SPEC §9: when a digest of who is at risk goes to the sink; undefined: never. */
  readonly digest?: Schedule | undefined;
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

/** A Power Automate Workflows webhook (the retired Office 365 connectors are not supported). */
export interface TeamsSinkConfig extends SinkRouting {
  readonly type: 'teams';
  readonly url: Secret;
}

export interface EmailSinkConfig extends SinkRouting {
  readonly type: 'email';
  /** smtp:// (STARTTLS required unless the host is loopback) or smtps://; may carry the password. */
  readonly smtp: Secret;
  readonly from: string;
  readonly to: readonly string[];
  readonly subjectPrefix: string;
}

export type PagerDutySeverity = 'critical' | 'error' | 'warning' | 'info';

export interface PagerDutySinkConfig extends SinkRouting {
  readonly type: 'pagerduty';
  readonly routingKey: Secret;
  /** The Events API origin: https://events.pagerduty.com, or https://events.eu.pagerduty.com. */
  readonly url: string;
  readonly severity: Readonly<Record<RiskLevel, PagerDutySeverity>>;
  /** Behavior events as Change Events (`change`), as incidents opened by a disable (`alert`), or not at all. */
  readonly behaviors: 'change' | 'alert' | 'off';
  /** A fingerprint of the URL and routing key its incidents are opened with (never the key). */
  readonly credentialId: string;
}

export type OpsgeniePriority = 'P1' | 'P2' | 'P3' | 'P4' | 'P5';

export interface OpsgenieSinkConfig extends SinkRouting {
  readonly type: 'opsgenie';
  readonly apiKey: Secret;
  /** https://api.opsgenie.com, https://api.eu.opsgenie.com, or https://api.atlassian.com/jsm/ops/integration. */
  readonly url: string;
  readonly priority: Readonly<Record<RiskLevel, OpsgeniePriority>>;
  readonly tags: readonly string[];
  /** A fingerprint of the URL and API key its alerts are opened with (never the key). */
  readonly credentialId: string;
}

export type SinkConfig = ConsoleSinkConfig | SlackSinkConfig | WebhookSinkConfig | TeamsSinkConfig | EmailSinkConfig | PagerDutySinkConfig | OpsgenieSinkConfig;

/** Incident sinks open an incident on a rise and resolve it on the drop, so they get every drop (SPEC §2). */
export function isIncidentSink(config: SinkConfig): config is PagerDutySinkConfig | OpsgenieSinkConfig {
  return config.type === 'pagerduty' || config.type === 'opsgenie';
}
