import * as z from 'zod';
import { isLoopbackHost } from '../http.ts';
import { EVENT_TYPES, RISK_LEVELS, type RiskLevel } from '../model.ts';
import { parseDuration } from './duration.ts';

// zod compiles each object schema into a function at its first parse. riskwatch parses a config once per
// process and a small envelope per Cloudflare page, so compiling costs more than it saves: about 5 ms of
// every command's start (issue 17). Set here, where every process's first parse is defined.
z.config({ jitless: true });

/**
 * The shape of riskwatch.yaml (SPEC §4) and every default, in one place.
 * Objects are strict: an unknown key is almost always a typo.
 */

export const DEFAULT_API_BASE_URL = 'https://api.cloudflare.com/client/v4';

/** Headers that frame an HTTP request or its connection: never a webhook's configured `headers`. */
const FRAMING_HEADERS = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'host', 'upgrade', 'te', 'trailer', 'expect']);

const nonEmpty = z.string().trim().min(1, { error: 'must not be empty' });

const httpUrl = z
  .string()
  .trim()
  .refine(
    (value) => {
      try {
        const url = new URL(value);
        return url.protocol === 'https:' || url.protocol === 'http:';
      } catch {
        return false;
      }
    },
    // The value is never echoed: webhook URLs are secrets.
    { error: 'must be an http(s) URL' },
  );

/**
 * A URL that is a credential (Slack, Teams) or is sent one (PagerDuty,
 * Opsgenie, Cloudflare's API): https, or http on a loopback host (a local
 * relay, a test's fake), never plain text across a network.
 */
const credentialUrl = httpUrl.refine((value) => URL.parse(value)?.protocol !== 'http:' || isLoopbackHost(URL.parse(value)?.hostname ?? ''), {
  error: 'must be an https URL (http only on a loopback host): it carries a credential',
});

/**
 * An incident API's base URL: riskwatch appends `/v2/…` itself, so a URL
 * copied with the endpoint's path would 404 every event (dead-lettered).
 */
const apiBaseUrl = (base: string, eu: string) =>
  credentialUrl.refine((value) => !/\/v2(\/|$)/.test(URL.parse(value)?.pathname ?? ''), { error: `must be the API's base URL, without /v2/… (${base}, or ${eu} in the EU)` }).default(base);

const duration = (min: number, minText: string, max: number, maxText: string) =>
  z.union([z.string(), z.number()], { error: 'must be a duration like 30s, 5m, 1h' }).transform((value, ctx) => {
    if (typeof value === 'number') {
      ctx.addIssue({ code: 'custom', message: `${value} has no unit: write ${value}s, ${value}m or ${value}h` });
      return z.NEVER;
    }
    const ms = parseDuration(value);
    if (ms === undefined) {
      ctx.addIssue({ code: 'custom', message: `"${value}" is not a duration (use 30s, 5m, 1h)` });
      return z.NEVER;
    }
    if (ms < min) {
      ctx.addIssue({ code: 'custom', message: `must be at least ${minText} (got ${value})` });
      return z.NEVER;
    }
    if (ms > max) {
      ctx.addIssue({ code: 'custom', message: `must be at most ${maxText} (got ${value})` });
      return z.NEVER;
    }
    return ms;
  });

/** Credential fields, accepted globally under `cloudflare:` and per account. */
const credentialFields = {
  api_token: nonEmpty.optional(),
  api_email: nonEmpty.optional(),
  api_key: nonEmpty.optional(),
};

const level = z.enum(RISK_LEVELS, { error: `must be one of ${RISK_LEVELS.join(', ')}` });

const routing = {
  name: nonEmpty.regex(/^[A-Za-z0-9_.-]+$/, { error: 'may use only letters, digits, "_", "-" and "."' }),
  min_level: level.default('low'),
  events: z
    .array(z.enum(EVENT_TYPES, { error: `must be one of ${EVENT_TYPES.join(', ')}` }))
    .min(1, { error: 'must list at least one event type (or be left out for all)' })
    .optional(),
  accounts: z.array(nonEmpty).min(1, { error: 'must list at least one account (or be left out for all)' }).optional(),
  // SPEC §9: a cron line, read in digest_timezone (checked with croner in load.ts).
  digest: nonEmpty.optional(),
  digest_timezone: nonEmpty.optional(),
};

const webhookSecret = nonEmpty.refine(
  (value) => {
    const key = value.startsWith('whsec_') ? value.slice('whsec_'.length) : value;
    return /^[A-Za-z0-9+/]+={0,2}$/.test(key) && Buffer.from(key, 'base64').length >= 16;
  },
  { error: 'must be a Standard Webhooks secret: "whsec_" followed by base64 of at least 16 bytes' },
);

export const SINK_TYPES = ['slack', 'teams', 'email', 'pagerduty', 'opsgenie', 'webhook', 'console'] as const;

const pagerDutySeverity = z.enum(['critical', 'error', 'warning', 'info'], { error: 'must be critical, error, warning or info' });
export const DEFAULT_PAGERDUTY_SEVERITY = { high: 'critical', medium: 'warning', low: 'info' } as const;
const opsgeniePriority = z.enum(['P1', 'P2', 'P3', 'P4', 'P5'], { error: 'must be one of P1, P2, P3, P4, P5' });
export const DEFAULT_OPSGENIE_PRIORITY = { high: 'P1', medium: 'P3', low: 'P5' } as const;

function definedOnly<T extends object>(map: T): Partial<T> {
  return Object.fromEntries(Object.entries(map).filter(([, value]) => value !== undefined)) as Partial<T>;
}

/** An SMTP server: smtps:// is TLS from the start, smtp:// upgrades with STARTTLS (SPEC §5). Never echoed: it may carry a password. */
const smtpUrl = z
  .string()
  .trim()
  .refine(
    (value) => {
      try {
        const url = new URL(value);
        return (url.protocol === 'smtp:' || url.protocol === 'smtps:') && url.hostname !== '';
      } catch {
        return false;
      }
    },
    { error: 'must be an smtp:// or smtps:// URL (smtps://user:password@mail.example.com:465)' },
  );

/** One mail address, as `a@example.com` or `Security <a@example.com>`; no line breaks, which would forge headers. */
const mailbox = z
  .string()
  .trim()
  .regex(/^(?:[^\r\n<>@]*<[^\s<>@]+@[^\s<>@]+>|[^\s<>@]+@[^\s<>@]+)$/, { error: 'must be a mail address (security@example.com or "Security <security@example.com>")' });

const sink = z.discriminatedUnion(
  'type',
  [
    z.strictObject({ type: z.literal('console'), ...routing }),
    z.strictObject({
      type: z.literal('slack'),
      ...routing,
      url: credentialUrl,
      mention: z
        .string()
        .trim()
        .regex(/^(<!(here|channel|everyone)>|<@[UW][A-Z0-9]+>|<!subteam\^[A-Z0-9]+>)( (<!(here|channel|everyone)>|<@[UW][A-Z0-9]+>|<!subteam\^[A-Z0-9]+>))*$/, {
          error: 'must be Slack mentions such as <!here>, <!channel>, <@U012AB3CD> or <!subteam^S012AB3CD>',
        })
        .optional(),
    }),
    z.strictObject({
      type: z.literal('webhook'),
      ...routing,
      url: httpUrl,
      secret: webhookSecret.optional(),
      headers: z
        .record(
          z
            .string()
            .regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, { error: 'is not a valid header name' })
            // Node sends these as given: a Content-Length that does not match the body would corrupt the next request on the connection.
            .refine((name) => !FRAMING_HEADERS.has(name.toLowerCase()), { error: 'frames the request: riskwatch sets it, a config may not' }),
          // Trimmed, as a secret file's trailing newline would otherwise make every request invalid.
          // Then only what an HTTP header value may hold (and Node sends): tab, printable ASCII, U+0080 to U+00FF;
          // anything else would pass check-config and dead-letter every delivery. Never echoed: values are secrets.
          z
            .string()
            .trim()
            .regex(/^[^\r\n\0]*$/, { error: 'must not contain line breaks', abort: true })
            .regex(/^[\t\x20-\x7e\x80-\xff]*$/, { error: 'may hold only Latin-1 characters, and no control character but tab' }),
        )
        .default({}),
    }),
    z.strictObject({
      type: z.literal('teams'),
      ...routing,
      // A Workflows URL: its host has changed over time, so only its scheme is checked (RECEIVERS.md).
      url: credentialUrl,
    }),
    z.strictObject({
      type: z.literal('email'),
      ...routing,
      smtp: smtpUrl,
      from: mailbox,
      to: z.union([mailbox.transform((one) => [one]), z.array(mailbox, { error: 'must be an address or a list of addresses' }).min(1, { error: 'must list at least one address' })], {
        error: 'must be an address or a list of addresses',
      }),
      subject_prefix: z
        .string()
        .trim()
        .max(100, { error: 'must be at most 100 characters' })
        .regex(/^[^\r\n]*$/, { error: 'must not contain line breaks' })
        .default('[riskwatch]'),
    }),
    z.strictObject({
      type: z.literal('pagerduty'),
      ...routing,
      min_level: level.default('high'),
      // Never echoed: the routing key is a secret.
      routing_key: z
        .string()
        .trim()
        .regex(/^[A-Za-z0-9]{32}$/, { error: 'must be the 32-character integration key of a PagerDuty Events API v2 integration' }),
      url: apiBaseUrl('https://events.pagerduty.com', 'https://events.eu.pagerduty.com'),
      severity: z
        .strictObject(Object.fromEntries(RISK_LEVELS.map((l) => [l, pagerDutySeverity.optional()])) as Record<RiskLevel, z.ZodOptional<typeof pagerDutySeverity>>)
        .prefault({})
        .transform((map) => ({ ...DEFAULT_PAGERDUTY_SEVERITY, ...definedOnly(map) })),
      behaviors: z.enum(['change', 'alert', 'off'], { error: 'must be change, alert or off' }).default('change'),
    }),
    z.strictObject({
      type: z.literal('opsgenie'),
      ...routing,
      min_level: level.default('high'),
      api_key: nonEmpty,
      url: apiBaseUrl('https://api.opsgenie.com', 'https://api.eu.opsgenie.com'),
      priority: z
        .strictObject(Object.fromEntries(RISK_LEVELS.map((l) => [l, opsgeniePriority.optional()])) as Record<RiskLevel, z.ZodOptional<typeof opsgeniePriority>>)
        .prefault({})
        .transform((map) => ({ ...DEFAULT_OPSGENIE_PRIORITY, ...definedOnly(map) })),
      tags: z
        .array(nonEmpty.max(50, { error: 'must be at most 50 characters' }), { error: 'must be a list of tags' })
        .max(20, { error: 'must list at most 20 tags' })
        .default([]),
    }),
  ],
  { error: `must be one of ${SINK_TYPES.join(', ')}` },
);

const listen = z.union([z.string(), z.number()], { error: 'must be host:port (e.g. 127.0.0.1:9464)' }).transform((value, ctx) => {
  const text = String(value);
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(text.trim());
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) {
    ctx.addIssue({ code: 'custom', message: `"${text}" is not host:port (e.g. 127.0.0.1:9464)` });
    return z.NEVER;
  }
  return { host: (match[1] ?? match[2]) as string, port };
});

export const configFileSchema = z.strictObject({
  cloudflare: z
    .strictObject({
      api_base_url: credentialUrl.default(DEFAULT_API_BASE_URL),
      ...credentialFields,
      requests_per_5min: z.int().min(1).max(100_000).default(1200),
      summary_paging: z.enum(['auto', 'off'], { error: 'must be auto or off' }).default('auto'),
    })
    .prefault({}),
  accounts: z
    .array(
      z.strictObject({
        id: z.string().regex(/^[0-9a-f]{32}$/, { error: 'must be a Cloudflare account id (32 lowercase hex characters)' }),
        name: nonEmpty.optional(),
        ...credentialFields,
      }),
      { error: 'must be a list of accounts' },
    )
    .min(1, { error: 'must list at least one account' }),
  poll_interval: duration(1000, '1s', 86_400_000, '24h').default(60_000),
  first_run: z.enum(['baseline', 'notify'], { error: 'must be baseline or notify' }).default('baseline'),
  notify: z
    .strictObject({
      lowered: z.boolean().default(false),
      enrich: z.boolean().default(true),
      max_age: duration(60_000, '1m', 30 * 86_400_000, '30d').default(24 * 3_600_000),
      // SPEC §9: off unless given. window is also checked against poll_interval (load.ts).
      flapping: z
        .strictObject({
          // Level changes: one is not flapping.
          changes: z.int().min(2).max(1000),
          window: duration(1000, '1s', 7 * 86_400_000, '7d'),
        })
        .optional(),
    })
    .prefault({}),
  // SQLite (a file, the embedded default) or PostgreSQL (shared by replicas): one of the two.
  state: z
    .strictObject({
      sqlite: nonEmpty.optional(),
      postgres: z
        .string()
        .trim()
        // The value is never echoed: the URL carries the password.
        .regex(/^postgres(ql)?:\/\/\S+$/, { error: 'must be a PostgreSQL URL (postgres://user:password@host:5432/database)' })
        .optional(),
      // How long recorded events (and dead letters) are kept for `events`, `users` and `deliveries` (SPEC §8).
      history: duration(3_600_000, '1h', 3650 * 86_400_000, '3650d').default(30 * 86_400_000),
    })
    .refine((state) => state.sqlite === undefined || state.postgres === undefined, { error: 'give sqlite or postgres, not both' })
    .prefault({}),
  sinks: z.array(sink, { error: 'must be a list of sinks' }).min(1, { error: 'must list at least one sink' }),
  http: z
    .strictObject({
      listen: listen.default({ host: '127.0.0.1', port: 9464 }),
      // The web console and /api/ (SPEC §10): off unless asked for.
      console: z.boolean({ error: 'must be true or false' }).default(false),
      // Never echoed: whoever holds it reads and mutes every account.
      token: z
        .string()
        .trim()
        .min(16, { error: 'must be at least 16 characters (openssl rand -hex 32 makes one)' })
        .regex(/^\S+$/, { error: 'must not contain spaces (it is sent as Authorization: Bearer TOKEN)' })
        .optional(),
    })
    .prefault({}),
  log: z
    .strictObject({
      level: z
        .enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], {
          error: 'must be one of trace, debug, info, warn, error, fatal, silent',
        })
        .default('info'),
      format: z.enum(['json', 'pretty'], { error: 'must be json or pretty' }).default('json'),
    })
    .prefault({}),
});

export type ConfigFile = z.output<typeof configFileSchema>;

/** Keys whose value is a secret: they also accept a `<key>_file` sibling, and are never printed. */
export const SECRET_KEYS: ReadonlySet<string> = new Set(['api_token', 'api_key', 'url', 'secret', 'postgres', 'routing_key', 'smtp', 'token']);
