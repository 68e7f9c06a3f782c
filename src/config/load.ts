import { LineCounter, parseDocument } from 'yaml';
import type { z } from 'zod';
import { ConfigError, ConfigErrors } from '../errors.ts';
import type { AccountConfig, Config, Credential, SinkConfig, SinkRouting } from './config.ts';
import { type ConfigFile, configFileSchema, SECRET_KEYS } from './schema.ts';
import { formatDuration } from './duration.ts';
import { parseSchedule, type Schedule, ScheduleError } from './schedule.ts';
import { Secret } from './secret.ts';
import { isLoopbackHost } from '../http.ts';

const { readFileSync } = process.getBuiltinModule('node:fs');
const path = process.getBuiltinModule('node:path');

export type Env = Readonly<Record<string, string | undefined>>;

/** `--config FILE`, else `$RISKWATCH_CONFIG`, else `./riskwatch.yaml` (SPEC §3). */
export function resolveConfigPath(flag: string | undefined, env: Env, cwd = process.cwd()): string {
  return path.resolve(cwd, flag ?? env.RISKWATCH_CONFIG ?? 'riskwatch.yaml');
}

/**
 * Reads, interpolates, validates and freezes a config file.
 * Throws ConfigError (one problem) or ConfigErrors (several), each a line
 * that names the file and the key path or environment variable at fault.
 */
export function loadConfig(file: string, env: Env): Config {
  const text = readConfigText(file);
  return parseConfig(text, file, env);
}

/** As loadConfig, for text already read (SIGHUP re-reads through loadConfig). */
export function parseConfig(text: string, file: string, env: Env): Config {
  const where = displayPath(file);
  const lines = new LineCounter();
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true, lineCounter: lines });
  const syntax = doc.errors[0];
  if (syntax) {
    const pos = lines.linePos(syntax.pos[0]);
    const at = `${where}:${pos.line}:${pos.col}`;
    throw new ConfigError(`${at}: YAML syntax error: ${firstLine(syntax.message)}`);
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (error) {
    // The yaml library refuses alias bombs (a few lines expanding to millions of nodes).
    throw new ConfigError(`${where}: YAML aliases expand too far: ${firstLine((error as Error).message)}`);
  }
  if (raw === null || raw === undefined) throw new ConfigError(`${where}: the config file is empty`);
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(`${where}: the config file must be a YAML mapping of keys (cloudflare, accounts, sinks, ...)`);
  }

  const problems: string[] = [];
  const empty = new Map<string, string>();
  const resolved = resolveValues(raw, [], { env, baseDir: path.dirname(file), problems, empty });
  if (problems.length === 0) {
    const parsed = configFileSchema.safeParse(resolved);
    if (parsed.success) {
      const config = buildConfig(parsed.data, file, problems);
      if (problems.length === 0) return deepFreeze(config);
    } else {
      problems.push(...describeIssues(parsed.error.issues, resolved, empty));
    }
  }
  throw problems.length === 1 ? new ConfigError(`${where}: ${problems[0]}`) : new ConfigErrors(problems.map((p) => `${where}: ${p}`));
}

function readConfigText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new ConfigError(`config file ${file} not found (give --config FILE or set RISKWATCH_CONFIG)`);
    }
    if (code === 'EISDIR') throw new ConfigError(`config file ${file} is a directory`);
    if (code === 'EACCES') throw new ConfigError(`config file ${file} cannot be read: permission denied`);
    throw new ConfigError(`config file ${file} cannot be read: ${code ?? (error as Error).message}`);
  }
}

type KeyPath = readonly (string | number)[];

/** `['sinks', 1, 'url']` → `sinks[1].url` */
export function formatKeyPath(keys: readonly PropertyKey[]): string {
  let out = '';
  for (const key of keys) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out === '' ? String(key) : `.${String(key)}`;
  }
  return out || '(top level)';
}

interface ResolveContext {
  readonly env: Env;
  readonly baseDir: string;
  readonly problems: string[];
  /** Key paths whose `${NAME}` was set but empty, and the NAME: a value refused there names the variable. */
  readonly empty: Map<string, string>;
}

const VARIABLE = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;
/** A whole value that is `$NAME`: a variable meant, braces forgotten (no real secret is that). */
const BARE_VARIABLE = /^\$([A-Z_][A-Z0-9_]*)$/;

/** Replaces `${NAME}` in every string and reads `<secret>_file` siblings, collecting problems by key path. */
function resolveValues(node: unknown, at: KeyPath, ctx: ResolveContext): unknown {
  if (typeof node === 'string') {
    // `api_token: $CLOUDFLARE_API_TOKEN` would be sent as that literal text, and the API's 403 would blame a permission.
    const bare = BARE_VARIABLE.exec(node.trim());
    if (bare) ctx.problems.push(`${formatKeyPath(at)}: "${bare[0]}" is taken literally: write \${${bare[1]}} to read the environment variable`);
    return node.replace(VARIABLE, (_, name: string) => {
      const value = ctx.env[name];
      if (value === undefined) {
        ctx.problems.push(`${formatKeyPath(at)}: environment variable ${name} is not set`);
        return '';
      }
      // Empty may be meant (`name: prod${SUFFIX}`): only a value refused here says so (describeIssues).
      if (value === '') ctx.empty.set(formatKeyPath(at), name);
      return value;
    });
  }
  if (Array.isArray(node)) return node.map((item, i) => resolveValues(item, [...at, i], ctx));
  if (node === null || typeof node !== 'object') return node;

  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(node)) out[key] = resolveValues(value, [...at, key], ctx);
  // Header names are the user's own words, never `<secret>_file` indirections.
  if (at.at(-1) === 'headers') return out;
  for (const key of Object.keys(out)) {
    const base = key.endsWith('_file') ? key.slice(0, -'_file'.length) : undefined;
    if (base === undefined || !SECRET_KEYS.has(base)) continue;
    const where = formatKeyPath([...at, key]);
    const file = out[key];
    delete out[key];
    if (base in out) {
      ctx.problems.push(`${formatKeyPath(at)}: give ${base} or ${key}, not both`);
    } else if (typeof file !== 'string' || file === '') {
      ctx.problems.push(`${where}: must be a file path`);
    } else {
      out[base] = readSecretFile(path.resolve(ctx.baseDir, file), where, ctx.problems);
    }
  }
  return out;
}

function readSecretFile(file: string, where: string, problems: string[]): string | undefined {
  try {
    const value = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    if (value.trim() === '') problems.push(`${where}: ${file} is empty`);
    return value;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (code ?? 'unreadable');
    problems.push(`${where}: cannot read ${file}: ${why}`);
    return undefined;
  }
}

/**
 * zod's issues as lines. A key left out (or left empty) is "required" (zod
 * would say "must be a list"); a value refused where `${NAME}` was set but
 * empty names the variable; an unknown key that is one slip from a key that is required and
 * missing beside it (`sink:` for `sinks:`) is said once, as that typo, first.
 */
function describeIssues(issues: readonly z.core.$ZodIssue[], input: unknown, empty: ReadonlyMap<string, string>): string[] {
  const missing = issues.filter((issue) => issue.code === 'invalid_type' && valueAt(input, issue.path) == null);
  const explained = new Set<z.core.$ZodIssue>();
  const typos = new Map<string, string>();
  for (const issue of issues) {
    if (issue.code !== 'unrecognized_keys') continue;
    for (const key of issue.keys) {
      const meant = missing.find((m) => m.path.length === issue.path.length + 1 && issue.path.every((k, i) => m.path[i] === k) && isSlip(key, String(m.path.at(-1))));
      if (!meant) continue;
      explained.add(meant);
      const at = formatKeyPath([...issue.path, key]);
      typos.set(at, `${at}: unknown key: did you mean ${String(meant.path.at(-1))}? (${formatKeyPath(meant.path)} is required)`);
    }
  }
  const rest = issues.flatMap((issue) => {
    if (explained.has(issue)) return [];
    const variable = empty.get(formatKeyPath(issue.path));
    if (variable !== undefined) return [`${formatKeyPath(issue.path)}: environment variable ${variable} is set but empty`];
    if (issue.code === 'unrecognized_keys')
      return issue.keys
        .map((key) => formatKeyPath([...issue.path, key]))
        .filter((at) => !typos.has(at))
        .map((at) => `${at}: unknown key`);
    if (missing.includes(issue)) return [`${formatKeyPath(issue.path)}: is required${REQUIRED_HINT[formatKeyPath(issue.path)] ?? ''}`];
    // `id: 0123…` or `on: yes` is read by YAML as a number or a boolean, not as the text written.
    const value = valueAt(input, issue.path);
    if (issue.code === 'invalid_type' && issue.expected === 'string' && (typeof value === 'number' || typeof value === 'boolean')) {
      return [`${formatKeyPath(issue.path)}: must be text, and YAML read a ${typeof value} there: put the value in quotes`];
    }
    return [describeIssue(issue)];
  });
  return [...typos.values(), ...rest];
}

/** What a required key's line adds: what to write there. */
const REQUIRED_HINT: Readonly<Record<string, string>> = {
  accounts: ': list at least one account (- id: <32-hex account id>)',
  sinks: ': list at least one sink (name and type)',
};

function valueAt(node: unknown, keys: readonly PropertyKey[]): unknown {
  let value = node;
  for (const key of keys) value = value !== null && typeof value === 'object' ? (value as Record<PropertyKey, unknown>)[key] : undefined;
  return value;
}

/** The same but for the case, one letter added, dropped or changed, or two swapped: a slip of the hand. */
function isSlip(typed: string, meant: string): boolean {
  const [a, b] = [typed.toLowerCase(), meant.toLowerCase()];
  if (a === b) return true;
  if (Math.abs(a.length - b.length) > 1) return false;
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  const [ra, rb] = [a.slice(i), b.slice(i)];
  return ra.slice(1) === rb.slice(1) || ra.slice(1) === rb || ra === rb.slice(1) || (ra.length >= 2 && ra[0] === rb[1] && ra[1] === rb[0] && ra.slice(2) === rb.slice(2));
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const at = formatKeyPath(issue.path);
  if (issue.code === 'invalid_type') return `${at}: must be ${article(issue.expected)}`;
  if (issue.code === 'too_small' && issue.origin === 'number') return `${at}: must be at least ${issue.minimum}`;
  if (issue.code === 'too_big' && issue.origin === 'number') return `${at}: must be at most ${issue.maximum}`;
  // A mapping's key refused (a webhook header's name): what the key's own check said, not zod's "Invalid key in record".
  if (issue.code === 'invalid_key' && issue.issues[0] !== undefined) return `${at}: ${issue.issues[0].message}`;
  return `${at}: ${issue.message}`;
}

function article(expected: string): string {
  const noun = expected === 'array' ? 'list' : expected === 'object' ? 'mapping' : expected === 'int' ? 'whole number' : expected;
  return /^[aeiou]/.test(noun) ? `an ${noun}` : `a ${noun}`;
}

type CredentialFields = { api_token?: string | undefined; api_email?: string | undefined; api_key?: string | undefined };

/** Cross-field rules zod's shape cannot say (credentials, duplicates, references); adds to `problems`. */
function buildConfig(file: ConfigFile, source: string, problems: string[]): Config {
  const global = credentialFrom(file.cloudflare, 'cloudflare', problems);
  const flapping = file.notify.flapping;
  if (flapping && flapping.window < 2 * file.poll_interval) {
    problems.push(`notify.flapping.window: must be at least twice poll_interval (${formatDuration(2 * file.poll_interval)} or more), so that polls can see a user stay put for a whole window`);
  }

  const accounts: AccountConfig[] = [];
  const byKey = new Map<string, number>();
  file.accounts.forEach((account, i) => {
    const credential = credentialFrom(account, `accounts[${i}]`, problems) ?? global;
    if (!credential && problems.length === 0) {
      problems.push(`accounts[${i}]: no Cloudflare credential: set cloudflare.api_token (or cloudflare.api_email + cloudflare.api_key), or api_token on the account`);
    }
    for (const [key, value] of [['id', account.id] as const, ['name', account.name] as const]) {
      if (value === undefined) continue;
      const seen = byKey.get(value);
      if (seen !== undefined) {
        problems.push(`accounts[${i}].${key}: "${value}" is already used by accounts[${seen}]`);
      } else {
        byKey.set(value, i);
      }
    }
    if (credential) {
      accounts.push({ id: account.id, name: account.name, label: account.name ?? account.id, credential });
    }
  });

  // Anyone who reaches the console reads every account and can mute alerts: off the host, only with a token.
  if (file.http.console && file.http.token === undefined && !isLoopbackHost(file.http.listen.host)) {
    problems.push(`http.token: required when http.console is on and http.listen (${file.http.listen.host}) is not a loopback address: set http.token (or token_file)`);
  }

  const sinkNames = new Map<string, number>();
  const sinks = file.sinks.map((sink, i): SinkConfig => {
    const seen = sinkNames.get(sink.name);
    if (seen !== undefined) problems.push(`sinks[${i}].name: "${sink.name}" is already used by sinks[${seen}]`);
    sinkNames.set(sink.name, i);
    const accountIds = sink.accounts?.map((ref, j) => {
      const index = byKey.get(ref);
      if (index === undefined) problems.push(`sinks[${i}].accounts[${j}]: "${ref}" is not the id or name of a configured account`);
      return file.accounts[index ?? 0]!.id;
    });
    const routing = {
      name: sink.name,
      minLevel: sink.min_level,
      events: sink.events && readonlySet(sink.events),
      accounts: accountIds && readonlySet(accountIds),
      digest: digestOf(sink, `sinks[${i}]`, problems),
    };
    return sinkConfig(sink, routing);
  });

  return {
    file: source,
    cloudflare: {
      apiBaseUrl: file.cloudflare.api_base_url.replace(/\/+$/, ''),
      requestsPer5Min: file.cloudflare.requests_per_5min,
      summaryPaging: file.cloudflare.summary_paging,
    },
    accounts,
    pollIntervalMs: file.poll_interval,
    firstRun: file.first_run,
    notify: {
      lowered: file.notify.lowered,
      enrich: file.notify.enrich,
      maxAgeMs: file.notify.max_age,
      flapping: file.notify.flapping && { changes: file.notify.flapping.changes, windowMs: file.notify.flapping.window },
    },
    state:
      file.state.postgres !== undefined
        ? { kind: 'postgres', url: new Secret(file.state.postgres), historyMs: file.state.history }
        : { kind: 'sqlite', file: path.resolve(path.dirname(source), file.state.sqlite ?? './riskwatch.db'), historyMs: file.state.history },
    sinks,
    http: { listen: file.http.listen, console: file.http.console, token: file.http.token === undefined ? undefined : new Secret(file.http.token) },
    log: { level: file.log.level, format: file.log.format },
  };
}

/** A sink's digest schedule (SPEC §9), checked by croner; a problem names the key at fault. */
function digestOf(sink: ConfigFile['sinks'][number], at: string, problems: string[]): Schedule | undefined {
  if (sink.digest === undefined) {
    if (sink.digest_timezone !== undefined) problems.push(`${at}.digest_timezone: has no digest to time: give digest too (a cron line, "0 9 * * 1-5")`);
    return undefined;
  }
  // An Opsgenie alert always pages: a digest would wake someone every morning.
  if (sink.type === 'opsgenie') {
    problems.push(`${at}.digest: an Opsgenie sink cannot take a digest (every Opsgenie message is an alert that pages): give it to a chat, email or webhook sink`);
    return undefined;
  }
  try {
    return parseSchedule(sink.digest, sink.digest_timezone ?? 'UTC');
  } catch (error) {
    if (!(error instanceof ScheduleError)) throw error;
    problems.push(`${at}.${error.key === 'cron' ? 'digest' : 'digest_timezone'}: ${error.message}`);
    return undefined;
  }
}

/** One sink of the file as the config riskwatch runs with, its routing already read. */
function sinkConfig(sink: ConfigFile['sinks'][number], routing: SinkRouting): SinkConfig {
  switch (sink.type) {
    case 'console':
      return { type: 'console', ...routing };
    case 'slack':
      return { type: 'slack', ...routing, url: new Secret(sink.url), mention: sink.mention };
    case 'webhook':
      return {
        type: 'webhook',
        ...routing,
        url: new Secret(sink.url),
        secret: sink.secret === undefined ? undefined : new Secret(sink.secret),
        headers: Object.fromEntries(Object.entries(sink.headers).map(([name, value]) => [name, new Secret(value)])),
      };
    case 'teams':
      return { type: 'teams', ...routing, url: new Secret(sink.url) };
    case 'email':
      return { type: 'email', ...routing, smtp: new Secret(sink.smtp), from: sink.from, to: sink.to, subjectPrefix: sink.subject_prefix };
    case 'pagerduty': {
      const url = sink.url.replace(/\/+$/, '');
      return {
        type: 'pagerduty',
        ...routing,
        routingKey: new Secret(sink.routing_key),
        url,
        severity: sink.severity,
        behaviors: sink.behaviors,
        get credentialId() {
          return credentialId(`${url}\n${sink.routing_key}`);
        },
      };
    }
    case 'opsgenie': {
      const url = sink.url.replace(/\/+$/, '');
      return {
        type: 'opsgenie',
        ...routing,
        apiKey: new Secret(sink.api_key),
        url,
        priority: sink.priority,
        tags: sink.tags,
        get credentialId() {
          return credentialId(`${url}\n${sink.api_key}`);
        },
      };
    }
  }
}

function credentialFrom(fields: CredentialFields, at: string, problems: string[]): Credential | undefined {
  const { api_token: token, api_email: email, api_key: key } = fields;
  if (token !== undefined && (email !== undefined || key !== undefined)) {
    problems.push(`${at}: give api_token or api_email + api_key, not both`);
    return undefined;
  }
  if (token !== undefined)
    return {
      scheme: 'token',
      get id() {
        return credentialId(token);
      },
      token: new Secret(token),
    };
  if (email === undefined && key === undefined) return undefined;
  if (email === undefined || key === undefined) {
    problems.push(`${at}.${email === undefined ? 'api_email' : 'api_key'}: is required with ${email === undefined ? 'api_key' : 'api_email'}`);
    return undefined;
  }
  return {
    scheme: 'key',
    get id() {
      return credentialId(`${email}\n${key}`);
    },
    email,
    key: new Secret(key),
  };
}

/**
 * A short, stable name for a credential that reveals nothing of it. Worked out
 * when first asked for (the daemon and check-config do): node:crypto takes
 * 10 ms to load, a tenth of a command's start.
 */
function credentialId(secret: string): string {
  return `cred-${process.getBuiltinModule('node:crypto').createHash('sha256').update(secret).digest('hex').slice(0, 8)}`;
}

/** Relative to the working directory when inside it, else absolute: what a user recognises. */
function displayPath(file: string): string {
  const relative = path.relative(process.cwd(), file);
  return relative === '' || relative.startsWith('..') || path.isAbsolute(relative) ? file : relative;
}

function firstLine(text: string): string {
  return text.split('\n', 1)[0]!.trim();
}

/** A Set that refuses changes at run time too, as the rest of the frozen config does. */
function readonlySet<T>(items: Iterable<T>): ReadonlySet<T> {
  const set = new Set(items);
  const refuse = () => {
    throw new TypeError('the configuration is read-only');
  };
  return Object.assign(set, { add: refuse, delete: refuse, clear: refuse });
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value) && !(value instanceof Secret)) {
    if (value instanceof Set) {
      for (const item of value) deepFreeze(item);
    } else {
      // Descriptors, not values: a getter (a credential's id) is left to work itself out when asked.
      for (const { value: child } of Object.values(Object.getOwnPropertyDescriptors(value))) deepFreeze(child);
    }
    Object.freeze(value);
  }
  return value;
}
