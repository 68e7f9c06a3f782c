import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_API_BASE_URL } from '../../src/config/schema.ts';
import { loadConfig, parseConfig } from '../../src/config/load.ts';
import type { Config, SinkConfig } from '../../src/config/config.ts';
import { summarizeConfig } from '../../src/config/summary.ts';
import { ConfigError, ConfigErrors } from '../../src/errors.ts';
import { main } from '../../src/main.ts';
import { ACCOUNT_ID, type ConfigDoc, configYaml, ENV, makeTempDir, OTHER_ACCOUNT_ID, SECRETS, type TempDir } from '../support/config-files.ts';

let tmp: TempDir;
beforeEach(() => {
  tmp = makeTempDir();
});
afterEach(() => {
  tmp.remove();
});

/** Writes the base config, changed by `edit`, and loads it. */
function load(edit?: (doc: ConfigDoc) => void, env: Record<string, string> = ENV): Config {
  return loadConfig(tmp.write('riskwatch.yaml', configYaml(edit)), env);
}

/** The problems a failed load reports, each checked to be a single line. */
function problemsOf(attempt: () => unknown): string[] {
  let problems: string[];
  try {
    attempt();
    throw new Error('expected a config error, but the config loaded');
  } catch (error) {
    if (error instanceof ConfigErrors) problems = [...error.problems];
    else if (error instanceof ConfigError) problems = [error.message];
    else throw error;
    expect((error as ConfigError).exitCode).toBe(2);
  }
  for (const problem of problems) expect(problem).not.toContain('\n');
  return problems;
}

/** The one problem a failed load reports; asserts it names `keyPath` exactly. */
function problemAt(keyPath: string, attempt: () => unknown): string {
  const problems = problemsOf(attempt);
  expect(problems).toHaveLength(1);
  const problem = problems[0]!;
  expect(problem).toContain(`: ${keyPath}: `);
  return problem;
}

const sink = (config: Config, name: string): SinkConfig => {
  const found = config.sinks.find((s) => s.name === name);
  if (!found) throw new Error(`no sink ${name}`);
  return found;
};

describe('a valid config parses into the typed config', () => {
  it('reads every key of SPEC §4', () => {
    const config = load((doc) => {
      doc.cloudflare.api_base_url = 'http://127.0.0.1:8787/client/v4/';
      doc.cloudflare.requests_per_5min = 600;
      doc.cloudflare.summary_paging = 'off';
      doc.poll_interval = '5m';
      doc.first_run = 'notify';
      doc.notify = { lowered: true, enrich: false, max_age: '6h' };
      doc.state = { sqlite: './data/rw.db', history: '90d' };
      doc.http = { listen: '0.0.0.0:9464' };
      doc.log = { level: 'debug' };
    });

    expect(config.file).toBe(path.join(tmp.dir, 'riskwatch.yaml'));
    expect(config.cloudflare).toEqual({ apiBaseUrl: 'http://127.0.0.1:8787/client/v4', requestsPer5Min: 600, summaryPaging: 'off' });
    expect(config.pollIntervalMs).toBe(300_000);
    expect(config.firstRun).toBe('notify');
    expect(config.notify).toEqual({ lowered: true, enrich: false, maxAgeMs: 6 * 3_600_000 });
    expect(config.state).toEqual({ kind: 'sqlite', file: path.join(tmp.dir, 'data', 'rw.db'), historyMs: 90 * 86_400_000 });
    expect(config.http.listen).toEqual({ host: '0.0.0.0', port: 9464 });
    expect(config.log.level).toBe('debug');

    expect(config.accounts).toHaveLength(1);
    const [account] = config.accounts;
    expect(account).toMatchObject({ id: ACCOUNT_ID, name: 'production', label: 'production' });
    expect(account!.credential.scheme).toBe('token');
    if (account!.credential.scheme === 'token') expect(account!.credential.token.reveal()).toBe(SECRETS.token);

    const secops = sink(config, 'secops');
    expect(secops.type).toBe('slack');
    expect(secops.minLevel).toBe('medium');
    expect(secops.events).toEqual(new Set(['user.risk_level_raised', 'behavior.disabled']));
    expect(secops.accounts).toEqual(new Set([ACCOUNT_ID]));
    if (secops.type === 'slack') expect(secops.url.reveal()).toBe(SECRETS.slackUrl);

    const incidents = sink(config, 'incidents');
    expect(incidents.type).toBe('webhook');
    if (incidents.type !== 'webhook') return;
    expect(incidents.url.reveal()).toBe(SECRETS.webhookUrl);
    expect(incidents.secret?.reveal()).toBe(SECRETS.webhookSecret);
    expect(Object.keys(incidents.headers)).toEqual(['X-Team', 'Authorization']);
    expect(incidents.headers.Authorization!.reveal()).toBe(SECRETS.headerValue);
  });

  it('applies a default for every optional key', () => {
    const config = load((doc) => {
      doc.accounts = [{ id: ACCOUNT_ID }];
      doc.sinks = [{ name: 'stdout', type: 'console' }];
    });

    expect(config.cloudflare).toEqual({ apiBaseUrl: DEFAULT_API_BASE_URL, requestsPer5Min: 1200, summaryPaging: 'auto' });
    expect(DEFAULT_API_BASE_URL).toBe('https://api.cloudflare.com/client/v4');
    expect(config.pollIntervalMs).toBe(60_000);
    expect(config.firstRun).toBe('baseline');
    expect(config.notify).toEqual({ lowered: false, enrich: true, maxAgeMs: 24 * 3_600_000 });
    expect(config.state).toEqual({ kind: 'sqlite', file: path.join(tmp.dir, 'riskwatch.db'), historyMs: 30 * 86_400_000 });
    expect(config.http.listen).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(config.log).toEqual({ level: 'info', format: 'json' });
    expect(config.accounts[0]).toMatchObject({ id: ACCOUNT_ID, name: undefined, label: ACCOUNT_ID });
    expect(config.sinks[0]).toMatchObject({ name: 'stdout', type: 'console', minLevel: 'low', events: undefined, accounts: undefined });
  });

  it('gives webhook sinks no secret and no headers by default', () => {
    const config = load((doc) => {
      doc.sinks = [{ name: 'incidents', type: 'webhook', url: SECRETS.webhookUrl }];
    });
    const incidents = config.sinks[0]!;
    expect(incidents.type === 'webhook' && incidents.secret).toBe(undefined);
    expect(incidents.type === 'webhook' && incidents.headers).toEqual({});
  });
});

describe('state.sqlite is relative to the config file, not the working directory', () => {
  it('resolves a relative path against the config directory', () => {
    const file = tmp.write(
      'etc/riskwatch/riskwatch.yaml',
      configYaml((doc) => (doc.state = { sqlite: 'state/rw.db' })),
    );
    expect(loadConfig(file, ENV).state).toEqual({ kind: 'sqlite', file: path.join(tmp.dir, 'etc', 'riskwatch', 'state', 'rw.db'), historyMs: 30 * 86_400_000 });
    expect(process.cwd()).not.toBe(path.join(tmp.dir, 'etc', 'riskwatch'));
  });

  it('keeps an absolute path', () => {
    const config = load((doc) => (doc.state = { sqlite: '/var/lib/riskwatch/state.db' }));
    expect(config.state).toEqual({ kind: 'sqlite', file: '/var/lib/riskwatch/state.db', historyMs: 30 * 86_400_000 });
  });
});

describe('the config object is frozen', () => {
  it('refuses changes at every level', () => {
    const config = load();
    for (const part of [
      config,
      config.cloudflare,
      config.accounts,
      config.accounts[0],
      config.accounts[0]!.credential,
      config.notify,
      config.state,
      config.sinks,
      config.sinks[0],
      config.http,
      config.log,
    ]) {
      expect(Object.isFrozen(part)).toBe(true);
    }
    const incidents = sink(config, 'incidents');
    expect(incidents.type === 'webhook' && Object.isFrozen(incidents.headers)).toBe(true);
    expect(() => {
      (config as { pollIntervalMs: number }).pollIntervalMs = 1;
    }).toThrow(TypeError);
    expect(() => {
      (config.accounts as unknown as unknown[]).push({});
    }).toThrow(TypeError);
    expect(config.pollIntervalMs).toBe(60_000);
  });

  it("refuses changes to a sink's routing sets", () => {
    const secops = sink(load(), 'secops');
    expect(() => (secops.events as Set<string>).add('behavior.added')).toThrow(TypeError);
    expect(() => (secops.accounts as Set<string>).clear()).toThrow(TypeError);
    expect(secops.events?.has('user.risk_level_raised')).toBe(true);
  });
});

describe('${VAR} is replaced from the environment', () => {
  it('replaces variables anywhere in a string', () => {
    const config = load(
      (doc) => {
        doc.sinks[1]!.url = 'https://${HOOK_HOST}/in/${HOOK_ID}';
        doc.state = { sqlite: '${STATE_DIR}/rw.db' };
      },
      { ...ENV, HOOK_HOST: 'hooks.example.net', HOOK_ID: 'abc123', STATE_DIR: '/var/lib/rw' },
    );
    const incidents = sink(config, 'incidents');
    expect(incidents.type === 'webhook' && incidents.url.reveal()).toBe('https://hooks.example.net/in/abc123');
    expect(config.state).toEqual({ kind: 'sqlite', file: '/var/lib/rw/rw.db', historyMs: 30 * 86_400_000 });
  });

  it('does not interpolate a value taken from the environment a second time', () => {
    const config = load((doc) => (doc.cloudflare.api_token = '${CLOUDFLARE_API_TOKEN}'), { ...ENV, CLOUDFLARE_API_TOKEN: 'tok-${HOME}' });
    const credential = config.accounts[0]!.credential;
    expect(credential.scheme === 'token' && credential.token.reveal()).toBe('tok-${HOME}');
  });

  it('names the key path and the variable when a variable is not set', () => {
    const { SLACK_WEBHOOK_URL: _, ...env } = ENV;
    const problem = problemAt('sinks[0].url', () => load(undefined, env));
    expect(problem).toMatch(/environment variable SLACK_WEBHOOK_URL is not set/);
  });

  it('a variable set but empty is named where its value is refused, and allowed where empty is fine', () => {
    expect(problemAt('sinks[0].url', () => load(undefined, { ...ENV, SLACK_WEBHOOK_URL: '' }))).toMatch(/: sinks\[0\]\.url: environment variable SLACK_WEBHOOK_URL is set but empty$/);
    const config = load((doc) => (doc.accounts[0]!.name = '${PREFIX}production'), { ...ENV, PREFIX: '' });
    expect(config.accounts[0]!.label).toBe('production');
  });

  it('$NAME without braces is refused (it would be sent as that text), naming the fix; a secret that merely holds a $ is not', () => {
    expect(problemAt('cloudflare.api_token', () => load((doc) => (doc.cloudflare.api_token = '$CLOUDFLARE_API_TOKEN')))).toMatch(
      /: cloudflare\.api_token: "\$CLOUDFLARE_API_TOKEN" is taken literally: write \$\{CLOUDFLARE_API_TOKEN\} to read the environment variable$/,
    );
    for (const token of ['pa$$word', '$ecret-Token', 'abc$DEF']) {
      const credential = load((doc) => (doc.cloudflare.api_token = token)).accounts[0]!.credential;
      expect(credential.scheme === 'token' && credential.token.reveal()).toBe(token);
    }
  });

  it('reports every missing variable, each on its own line', () => {
    const problems = problemsOf(() => load(undefined, {}));
    expect(problems).toHaveLength(3);
    expect(problems[0]).toMatch(/: cloudflare\.api_token: environment variable CLOUDFLARE_API_TOKEN is not set$/);
    expect(problems[1]).toMatch(/: sinks\[0\]\.url: environment variable SLACK_WEBHOOK_URL is not set$/);
    expect(problems[2]).toMatch(/: sinks\[1\]\.secret: environment variable WEBHOOK_SECRET is not set$/);
  });
});

describe('secrets may be read from *_file siblings', () => {
  it.each([
    ['api_token_file', 'cf-token-from-file'],
    ['url_file', 'https://hooks.example.com/in/from-file'],
    ['secret_file', SECRETS.webhookSecret],
  ])('reads %s relative to the config directory, trimming the trailing newline', (key, value) => {
    tmp.write('secrets/value', `${value}\n`);
    const config = load((doc) => {
      const target = key === 'api_token_file' ? doc.cloudflare : doc.sinks[1]!;
      delete target[key.slice(0, -'_file'.length)];
      target[key] = 'secrets/value';
    });
    const incidents = sink(config, 'incidents');
    if (incidents.type !== 'webhook') throw new Error('incidents is a webhook sink');
    const credential = config.accounts[0]!.credential;
    const read = { api_token_file: credential.scheme === 'token' ? credential.token : undefined, url_file: incidents.url, secret_file: incidents.secret }[key];
    expect(read?.reveal()).toBe(value);
  });

  it('trims a CRLF line ending and accepts an absolute path', () => {
    const file = tmp.write('slack-url', `${SECRETS.slackUrl}\r\n`);
    const config = load((doc) => {
      delete doc.sinks[0]!.url;
      doc.sinks[0]!.url_file = file;
    });
    const secops = sink(config, 'secops');
    expect(secops.type === 'slack' && secops.url.reveal()).toBe(SECRETS.slackUrl);
  });

  it('interpolates ${VAR} in the file path', () => {
    tmp.write('run/secrets/cf', 'cf-token-via-var\n');
    const config = load(
      (doc) => {
        delete doc.cloudflare.api_token;
        doc.cloudflare.api_token_file = '${SECRETS_DIR}/cf';
      },
      { ...ENV, SECRETS_DIR: path.join(tmp.dir, 'run', 'secrets') },
    );
    const credential = config.accounts[0]!.credential;
    expect(credential.scheme === 'token' && credential.token.reveal()).toBe('cf-token-via-var');
  });

  it('names the key path and the file when the file is missing', () => {
    const problem = problemAt('cloudflare.api_token_file', () =>
      load((doc) => {
        delete doc.cloudflare.api_token;
        doc.cloudflare.api_token_file = 'no/such/token';
      }),
    );
    expect(problem).toContain(path.join(tmp.dir, 'no', 'such', 'token'));
    expect(problem).toMatch(/no such file/);
  });

  it('refuses an empty secret file', () => {
    tmp.write('empty-secret', '\n');
    const problem = problemAt('sinks[1].secret_file', () =>
      load((doc) => {
        delete doc.sinks[1]!.secret;
        doc.sinks[1]!.secret_file = 'empty-secret';
      }),
    );
    expect(problem).toMatch(/is empty/);
  });

  it('refuses a secret given both inline and as a file', () => {
    tmp.write('slack-url', `${SECRETS.slackUrl}\n`);
    const problem = problemAt('sinks[0]', () => load((doc) => (doc.sinks[0]!.url_file = 'slack-url')));
    expect(problem).toMatch(/give url or url_file, not both/);
  });
});

describe('cloudflare.summary_paging', () => {
  it('is auto or off, and nothing else', () => {
    expect(load((doc) => (doc.cloudflare.summary_paging = 'off')).cloudflare.summaryPaging).toBe('off');
    expect(problemAt('cloudflare.summary_paging', () => load((doc) => (doc.cloudflare.summary_paging = 'sometimes')))).toMatch(/must be auto or off/);
  });
});

describe('durations', () => {
  it.each([
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['1h30m', 5_400_000],
    ['1s', 1000],
  ])('accepts poll_interval %s', (text, ms) => {
    expect(load((doc) => (doc.poll_interval = text)).pollIntervalMs).toBe(ms);
  });

  it.each([
    ['the string "60"', '60', /"60" is not a duration/],
    ['the number 60', 60, /60 has no unit: write 60s, 60m or 60h/],
    ['"fast"', 'fast', /"fast" is not a duration \(use 30s, 5m, 1h\)/],
    ['"500ms" (below the 1s minimum)', '500ms', /must be at least 1s/],
    ['"0s"', '0s', /must be at least 1s/],
  ])('rejects %s naming poll_interval', (_label, value, why) => {
    expect(problemAt('poll_interval', () => load((doc) => (doc.poll_interval = value)))).toMatch(why);
  });
});

describe('unknown keys are errors', () => {
  it('at the top level', () => {
    expect(problemAt('pol_interval', () => load((doc) => (doc.pol_interval = '30s')))).toMatch(/unknown key/);
  });

  it('in a sink', () => {
    expect(problemAt('sinks[1].urll', () => load((doc) => (doc.sinks[1]!.urll = 'https://x.example')))).toMatch(/unknown key/);
  });

  it('in nested mappings', () => {
    expect(problemAt('cloudflare.api_tokn', () => load((doc) => (doc.cloudflare.api_tokn = 'x')))).toMatch(/unknown key/);
    expect(problemAt('notify.lowerd', () => load((doc) => (doc.notify = { lowerd: true })))).toMatch(/unknown key/);
    expect(problemAt('accounts[0].nmae', () => load((doc) => (doc.accounts[0]!.nmae = 'prod')))).toMatch(/unknown key/);
  });

  it('one slip from a required key that is missing: said once, first, as the typo', () => {
    const problems = problemsOf(() =>
      load((doc) => {
        (doc as unknown as Record<string, unknown>).sink = doc.sinks;
        delete (doc as Partial<ConfigDoc>).sinks;
      }),
    );
    expect(problems.map((p) => p.replace(/^.*?: /, ''))).toEqual(['sink: unknown key: did you mean sinks? (sinks is required)']);
  });

  it('a value YAML reads as a number or a boolean where text belongs: put it in quotes', () => {
    // biome-ignore lint/correctness/noPrecisionLoss: an id YAML reads as a number, precision lost, is the case tested
    expect(problemAt('accounts[0].id', () => load((doc) => ((doc.accounts[0] as unknown as { id: number }).id = 12345678901234567890123456789012)))).toMatch(
      /: accounts\[0\]\.id: must be text, and YAML read a number there: put the value in quotes$/,
    );
  });

  it('a required key left out (or left empty) says so, and what to write', () => {
    expect(problemAt('accounts', () => load((doc) => delete (doc as Partial<ConfigDoc>).accounts))).toMatch(/: accounts: is required: list at least one account \(- id: <32-hex account id>\)$/);
    expect(problemAt('accounts', () => load((doc) => ((doc as unknown as { accounts: null }).accounts = null)))).toMatch(/: accounts: is required: list at least one account/);
    expect(problemAt('accounts', () => load((doc) => (doc.accounts = [])))).toMatch(/: accounts: must list at least one account$/);
  });

  it('a _file sibling of a key that is not a secret', () => {
    expect(problemAt('accounts[0].name_file', () => load((doc) => (doc.accounts[0]!.name_file = 'x')))).toMatch(/unknown key/);
  });
});

describe('the file itself', () => {
  it('reports a YAML syntax error with file:line:col', () => {
    const file = tmp.write('riskwatch.yaml', 'cloudflare:\n  api_token: x\naccounts:\n\t- id: 023e105f4ecef8ad9ca31a8372d0c353\n');
    const [problem] = problemsOf(() => loadConfig(file, ENV));
    expect(problem).toMatch(new RegExp(`^${escapeRegExp(file)}:4:1: YAML syntax error: \\S`));
  });

  it('reports a key given twice as a YAML error at its second line', () => {
    const file = tmp.write('riskwatch.yaml', `${configYaml()}poll_interval: 30s\npoll_interval: 40s\n`);
    const lines = configYaml().split('\n').length - 1;
    const [problem] = problemsOf(() => loadConfig(file, ENV));
    expect(problem).toMatch(new RegExp(`^${escapeRegExp(file)}:${lines + 2}:1: YAML syntax error: .*unique`));
  });

  it('reports a missing file by path', () => {
    const file = path.join(tmp.dir, 'absent.yaml');
    const [problem] = problemsOf(() => loadConfig(file, ENV));
    expect(problem).toContain(file);
    expect(problem).toMatch(/not found/);
  });

  it('reports a directory', () => {
    const [problem] = problemsOf(() => loadConfig(tmp.dir, ENV));
    expect(problem).toContain(tmp.dir);
    expect(problem).toMatch(/is a directory/);
  });

  it.each([
    ['an empty file', ''],
    ['a file of comments only', '# nothing here yet\n'],
  ])('reports %s as empty', (_label, text) => {
    const file = tmp.write('riskwatch.yaml', text);
    expect(problemsOf(() => loadConfig(file, ENV))).toEqual([`${file}: the config file is empty`]);
  });

  it.each([
    ['a top-level list', '- cloudflare\n- accounts\n'],
    ['a top-level scalar', 'riskwatch\n'],
  ])('reports %s as not a mapping', (_label, text) => {
    const file = tmp.write('riskwatch.yaml', text);
    const [problem] = problemsOf(() => loadConfig(file, ENV));
    expect(problem).toMatch(new RegExp(`^${escapeRegExp(file)}: .*must be a YAML mapping`));
  });

  it('reports a YAML alias bomb as one line instead of expanding it', () => {
    const file = tmp.write('riskwatch.yaml', 'a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n');
    const [problem] = problemsOf(() => loadConfig(file, ENV));
    expect(problem).toMatch(/YAML aliases expand too far/);
  });

  it('takes webhook header names as written, never as _file indirections', () => {
    const config = load((doc) => {
      doc.sinks[1]!.headers = { url_file: 'not-a-file' };
    });
    const incidents = sink(config, 'incidents');
    expect(incidents.type === 'webhook' && incidents.headers.url_file?.reveal()).toBe('not-a-file');
  });

  it('parseConfig reads text it is given, resolving paths against the file it names', () => {
    const config = parseConfig(configYaml(), path.join(tmp.dir, 'elsewhere', 'rw.yaml'), ENV);
    expect(config.state).toEqual({ kind: 'sqlite', file: path.join(tmp.dir, 'elsewhere', 'riskwatch.db'), historyMs: 30 * 86_400_000 });
  });
});

describe('Cloudflare credentials', () => {
  it('refuses a config with no credential at all', () => {
    const problem = problemAt('accounts[0]', () => load((doc) => delete doc.cloudflare.api_token));
    expect(problem).toMatch(/no Cloudflare credential/);
  });

  it('accepts api_email + api_key (the legacy global key)', () => {
    const config = load((doc) => (doc.cloudflare = { api_email: 'ops@example.com', api_key: 'global-key-91c2' }));
    const credential = config.accounts[0]!.credential;
    expect(credential).toMatchObject({ scheme: 'key', email: 'ops@example.com' });
    expect(credential.scheme === 'key' && credential.key.reveal()).toBe('global-key-91c2');
  });

  it('refuses api_email without api_key', () => {
    const problem = problemAt('cloudflare.api_key', () => load((doc) => (doc.cloudflare = { api_email: 'ops@example.com' })));
    expect(problem).toMatch(/is required with api_email/);
  });

  it('refuses api_key without api_email', () => {
    const problem = problemAt('cloudflare.api_email', () => load((doc) => (doc.cloudflare = { api_key: 'global-key-91c2' })));
    expect(problem).toMatch(/is required with api_key/);
    expect(problem).not.toContain('global-key-91c2');
  });

  it('refuses api_token together with api_email', () => {
    const problem = problemAt('cloudflare', () => load((doc) => (doc.cloudflare.api_email = 'ops@example.com')));
    expect(problem).toMatch(/not both/);
    expect(problem).not.toContain(SECRETS.token);
  });

  it('refuses both schemes on one account', () => {
    const problem = problemAt('accounts[0]', () => load((doc) => Object.assign(doc.accounts[0]!, { api_token: 'acct-token', api_email: 'ops@example.com', api_key: 'k' })));
    expect(problem).toMatch(/not both/);
  });

  it("lets an account's api_token override the global one", () => {
    const config = load((doc) => {
      doc.accounts.push({ id: OTHER_ACCOUNT_ID, name: 'staging', api_token: 'staging-token-55e1' });
    });
    const [production, staging] = config.accounts;
    expect(production!.credential.scheme === 'token' && production!.credential.token.reveal()).toBe(SECRETS.token);
    expect(staging!.credential.scheme === 'token' && staging!.credential.token.reveal()).toBe('staging-token-55e1');
  });

  it('accepts a config whose only credentials are on the accounts', () => {
    const config = load((doc) => {
      doc.cloudflare = {};
      doc.accounts[0]!.api_token = 'acct-token-1';
    });
    expect(config.accounts[0]!.credential.scheme).toBe('token');
  });

  it('gives accounts sharing a credential the same credential id, and different credentials different ids', () => {
    const config = load((doc) => {
      doc.accounts = [
        { id: ACCOUNT_ID, name: 'production' },
        { id: OTHER_ACCOUNT_ID, name: 'staging' },
        { id: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', name: 'same-token', api_token: '${CLOUDFLARE_API_TOKEN}' },
        { id: 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', name: 'lab', api_token: 'lab-token-07' },
        { id: 'cccccccccccccccccccccccccccccccc', name: 'legacy', api_email: 'ops@example.com', api_key: 'legacy-key' },
      ];
    });
    const ids = config.accounts.map((a) => a.credential.id);
    expect(ids[1]).toBe(ids[0]);
    expect(ids[2]).toBe(ids[0]);
    expect(new Set([ids[0], ids[3], ids[4]]).size).toBe(3);
    for (const id of ids) {
      expect(id).not.toContain(SECRETS.token);
      expect(id).not.toContain('lab-token-07');
    }
  });
});

describe('accounts', () => {
  it('refuses an account id listed twice', () => {
    const problem = problemAt('accounts[1].id', () => load((doc) => doc.accounts.push({ id: ACCOUNT_ID, name: 'again' })));
    expect(problem).toContain(ACCOUNT_ID);
    expect(problem).toMatch(/accounts\[0\]/);
  });

  it('refuses two accounts with the same name', () => {
    const problem = problemAt('accounts[1].name', () => load((doc) => doc.accounts.push({ id: OTHER_ACCOUNT_ID, name: 'production' })));
    expect(problem).toMatch(/"production" is already used by accounts\[0\]/);
  });

  it.each([
    ['uppercase hex', '023E105F4ECEF8AD9CA31A8372D0C353'],
    ['31 characters', '023e105f4ecef8ad9ca31a8372d0c35'],
    ['a non-hex character', '023e105f4ecef8ad9ca31a8372d0c35g'],
  ])('refuses an id with %s', (_label, id) => {
    expect(problemAt('accounts[0].id', () => load((doc) => (doc.accounts[0]!.id = id)))).toMatch(/32 lowercase hex/);
  });

  it('refuses an empty account list', () => {
    expect(problemAt('accounts', () => load((doc) => (doc.accounts = [])))).toMatch(/at least one account/);
  });
});

describe('sinks', () => {
  it('refuses two sinks with the same name', () => {
    const problem = problemAt('sinks[1].name', () => load((doc) => (doc.sinks[1]!.name = 'secops')));
    expect(problem).toMatch(/"secops" is already used by sinks\[0\]/);
  });

  it("resolves a sink's accounts by name and by id to the account id", () => {
    const config = load((doc) => {
      doc.accounts.push({ id: OTHER_ACCOUNT_ID, name: 'staging' });
      doc.sinks[0]!.accounts = ['production'];
      doc.sinks[1]!.accounts = [OTHER_ACCOUNT_ID, 'production'];
    });
    expect(sink(config, 'secops').accounts).toEqual(new Set([ACCOUNT_ID]));
    expect(sink(config, 'incidents').accounts).toEqual(new Set([OTHER_ACCOUNT_ID, ACCOUNT_ID]));
  });

  it('refuses a sink account that is neither the id nor the name of an account', () => {
    const problem = problemAt('sinks[0].accounts[1]', () => load((doc) => (doc.sinks[0]!.accounts = ['production', 'prodution'])));
    expect(problem).toMatch(/"prodution" is not the id or name of a configured account/);
  });

  it('refuses an unknown sink type, listing the valid ones', () => {
    const problem = problemAt('sinks[1].type', () => load((doc) => (doc.sinks[1]!.type = 'msteams')));
    expect(problem).toMatch(/slack, teams, email, pagerduty, opsgenie, webhook, console/);
  });

  it('refuses an unknown event type', () => {
    const problem = problemAt('sinks[0].events[1]', () => load((doc) => (doc.sinks[0]!.events = ['user.risk_level_raised', 'user.raised'])));
    expect(problem).toMatch(/must be one of user\.risk_level_raised/);
  });

  it('refuses an unknown min_level', () => {
    expect(problemAt('sinks[0].min_level', () => load((doc) => (doc.sinks[0]!.min_level = 'critical')))).toMatch(/low, medium, high/);
  });

  it.each([
    ['not whsec_ and base64', 'whsec_not base64!!'],
    ['a key shorter than 16 bytes', 'whsec_c2hvcnRrZXk='],
  ])('refuses a webhook secret that is %s, without echoing it', (_label, secret) => {
    const problem = problemAt('sinks[1].secret', () => load(undefined, { ...ENV, WEBHOOK_SECRET: secret }));
    expect(problem).toMatch(/Standard Webhooks secret/);
    expect(problem).not.toContain(secret.slice('whsec_'.length));
  });

  it.each([
    ['without a scheme', 'hooks.slack.com/services/T0AAA1111/B0BBB2222/urlsecretpart'],
    ['with a non-http scheme', 'ftp://hooks.slack.com/services/T0AAA1111/B0BBB2222/urlsecretpart'],
  ])('refuses a URL %s, without echoing it', (_label, url) => {
    const problem = problemAt('sinks[0].url', () => load(undefined, { ...ENV, SLACK_WEBHOOK_URL: url }));
    expect(problem).toMatch(/must be an http\(s\) URL/);
    expect(problem).not.toContain('urlsecretpart');
    expect(problem).not.toContain('hooks.slack.com');
  });

  it('requires a url on slack and webhook sinks', () => {
    expect(problemAt('sinks[0].url', () => load((doc) => delete doc.sinks[0]!.url))).toMatch(/is required/);
  });

  it('refuses an empty sink list', () => {
    expect(problemAt('sinks', () => load((doc) => (doc.sinks = [])))).toMatch(/at least one sink/);
  });
});

describe('incident and chat receivers (SPEC §5)', () => {
  const ROUTING_KEY = 'R0UT1NGKEYsecretpagerduty0000042';
  const withSink = (extra: Record<string, unknown>) => (doc: ConfigDoc) => {
    doc.sinks = [{ name: 'r', ...extra }];
  };

  it('pagerduty: min_level high, the US host, severity by level and behaviors as change events by default', () => {
    const config = load(withSink({ type: 'pagerduty', routing_key: ROUTING_KEY }));
    const pd = sink(config, 'r');
    expect(pd).toMatchObject({
      type: 'pagerduty',
      minLevel: 'high',
      url: 'https://events.pagerduty.com',
      severity: { high: 'critical', medium: 'warning', low: 'info' },
      behaviors: 'change',
    });
    expect(pd.type === 'pagerduty' && pd.routingKey.reveal()).toBe(ROUTING_KEY);
  });

  it('pagerduty: an EU url, one severity overridden, routing_key_file', () => {
    const file = tmp.write('pd.key', `${ROUTING_KEY}\n`);
    const config = load(withSink({ type: 'pagerduty', routing_key_file: file, url: 'https://events.eu.pagerduty.com/', severity: { medium: 'error' }, behaviors: 'alert', min_level: 'medium' }));
    expect(sink(config, 'r')).toMatchObject({ url: 'https://events.eu.pagerduty.com', severity: { high: 'critical', medium: 'error', low: 'info' }, behaviors: 'alert', minLevel: 'medium' });
  });

  it('pagerduty: a routing key that is not 32 characters is refused, without echoing it', () => {
    const problem = problemAt('sinks[0].routing_key', () => load(withSink({ type: 'pagerduty', routing_key: `${ROUTING_KEY}X` })));
    expect(problem).toMatch(/32-character integration key/);
    expect(problem).not.toContain(ROUTING_KEY);
  });

  it('pagerduty: an unknown severity or behaviors mode names the key', () => {
    expect(problemAt('sinks[0].severity.high', () => load(withSink({ type: 'pagerduty', routing_key: ROUTING_KEY, severity: { high: 'sev1' } })))).toMatch(/critical, error, warning or info/);
    expect(problemAt('sinks[0].severity.urgent', () => load(withSink({ type: 'pagerduty', routing_key: ROUTING_KEY, severity: { urgent: 'critical' } })))).toMatch(/unknown key/);
    expect(problemAt('sinks[0].behaviors', () => load(withSink({ type: 'pagerduty', routing_key: ROUTING_KEY, behaviors: 'page' })))).toMatch(/change, alert or off/);
  });

  it('opsgenie: min_level high, the US host and P1/P3/P5 by default; tags within the API limits', () => {
    const config = load(withSink({ type: 'opsgenie', api_key: 'genie-key' }));
    expect(sink(config, 'r')).toMatchObject({ type: 'opsgenie', minLevel: 'high', url: 'https://api.opsgenie.com', priority: { high: 'P1', medium: 'P3', low: 'P5' }, tags: [] });
    expect(problemAt('sinks[0].tags', () => load(withSink({ type: 'opsgenie', api_key: 'k', tags: Array.from({ length: 21 }, (_, i) => `t${i}`) })))).toMatch(/at most 20/);
    expect(problemAt('sinks[0].tags[0]', () => load(withSink({ type: 'opsgenie', api_key: 'k', tags: ['x'.repeat(51)] })))).toMatch(/at most 50/);
    expect(problemAt('sinks[0].priority.high', () => load(withSink({ type: 'opsgenie', api_key: 'k', priority: { high: 'P0' } })))).toMatch(/P1, P2, P3, P4, P5/);
  });

  it('teams: a url, whatever its host (Workflows hosts have changed)', () => {
    const url = 'https://prod-01.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?sig=s3cret';
    const teams = sink(load(withSink({ type: 'teams', url })), 'r');
    expect(teams.type === 'teams' && teams.url.reveal()).toBe(url);
    expect(teams.minLevel).toBe('low');
  });

  it("a vendor receiver's URL is a credential or carries one: https, or http only on a loopback host, never echoed", () => {
    const cases = [
      { type: 'slack', url: 'http://hooks.slack.com/services/T0/B0/s3cretpath' },
      { type: 'teams', url: 'http://prod-01.westeurope.logic.azure.com/workflows/abc?sig=s3cretsig' },
      { type: 'pagerduty', routing_key: ROUTING_KEY, url: 'http://events.pagerduty.com' },
      { type: 'opsgenie', api_key: 'k', url: 'http://api.opsgenie.com' },
    ];
    expect(problemAt('cloudflare.api_base_url', () => load((doc) => (doc.cloudflare.api_base_url = 'http://cf-proxy.internal/client/v4')))).toMatch(/https URL \(http only on a loopback host\)/);
    for (const entry of cases) {
      const problem = problemAt('sinks[0].url', () => load(withSink(entry)));
      expect(problem, entry.type).toMatch(/https URL \(http only on a loopback host\)/);
      expect(problem).not.toMatch(/s3cret/);
      const loopback = { ...entry, url: entry.url.replace(/^http:\/\/[^/?]+/, 'http://127.0.0.1:8080') };
      expect(() => load(withSink(loopback)), entry.type).not.toThrow();
    }
    // A generic webhook may be an http service inside the network: its secret signs, and is not sent.
    expect(() => load(withSink({ type: 'webhook', url: 'http://soar.internal:8080/hook' }))).not.toThrow();
  });

  it("pagerduty and opsgenie: a URL copied with the endpoint's path is refused (riskwatch adds /v2/… itself)", () => {
    expect(problemAt('sinks[0].url', () => load(withSink({ type: 'pagerduty', routing_key: ROUTING_KEY, url: 'https://events.pagerduty.com/v2/enqueue' })))).toMatch(
      /base URL, without \/v2\/… \(https:\/\/events\.pagerduty\.com, or https:\/\/events\.eu\.pagerduty\.com in the EU\)/,
    );
    expect(problemAt('sinks[0].url', () => load(withSink({ type: 'opsgenie', api_key: 'k', url: 'https://api.eu.opsgenie.com/v2/alerts' })))).toMatch(/https:\/\/api\.eu\.opsgenie\.com in the EU/);
    const jsm = sink(load(withSink({ type: 'opsgenie', api_key: 'k', url: 'https://api.atlassian.com/jsm/ops/integration' })), 'r');
    expect(jsm.type === 'opsgenie' && jsm.url).toBe('https://api.atlassian.com/jsm/ops/integration');
  });

  it('email: one address or a list, a default subject prefix; smtp must be smtp:// or smtps://, never echoed', () => {
    const one = sink(load(withSink({ type: 'email', smtp: 'smtps://u:pw@mail.example.com', from: 'rw@example.com', to: 'secops@example.com' })), 'r');
    expect(one).toMatchObject({ type: 'email', from: 'rw@example.com', to: ['secops@example.com'], subjectPrefix: '[riskwatch]' });
    const many = sink(load(withSink({ type: 'email', smtp: 'smtp://127.0.0.1:2525', from: 'Riskwatch <rw@example.com>', to: ['a@example.com', 'On call <b@example.com>'] })), 'r');
    expect(many).toMatchObject({ to: ['a@example.com', 'On call <b@example.com>'] });
    const problem = problemAt('sinks[0].smtp', () => load(withSink({ type: 'email', smtp: 'https://u:topsecretpw@mail.example.com', from: 'rw@example.com', to: 'a@example.com' })));
    expect(problem).toMatch(/smtp:\/\/ or smtps:\/\//);
    expect(problem).not.toContain('topsecretpw');
  });

  it('email: an address with a line break (a forged header) is refused', () => {
    expect(problemAt('sinks[0].to[1]', () => load(withSink({ type: 'email', smtp: 'smtp://127.0.0.1', from: 'rw@example.com', to: ['a@example.com', 'b@example.com\nBcc: x@evil.example'] })))).toMatch(
      /mail address/,
    );
    expect(problemAt('sinks[0].from', () => load(withSink({ type: 'email', smtp: 'smtp://127.0.0.1', from: 'nobody', to: 'a@example.com' })))).toMatch(/mail address/);
  });
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

describe('a Slack sink may carry mentions, and only real Slack mention syntax', () => {
  it('keeps a valid mention list', () => {
    const secops = sink(
      load((doc) => {
        doc.sinks[0]!.mention = '<!here> <@U012AB3CD>';
      }),
      'secops',
    );
    expect(secops.type === 'slack' && secops.mention).toBe('<!here> <@U012AB3CD>');
  });

  it('refuses anything else', () => {
    problemAt('sinks[0].mention', () =>
      load((doc) => {
        doc.sinks[0]!.mention = '<https://evil.example|click>';
      }),
    );
  });

  it('notify.flapping (SPEC §9): off by default; changes and window as given', () => {
    expect(load().notify.flapping).toBeUndefined();
    expect(
      load((doc) => {
        doc.poll_interval = '1s';
        doc.notify = { lowered: true, flapping: { changes: 4, window: '6s' } };
      }).notify.flapping,
    ).toEqual({ changes: 4, windowMs: 6000 });
  });

  it.each([
    [{ changes: 1, window: '30m' }, 'notify.flapping.changes', /must be at least 2$/],
    [{ changes: 2.5, window: '30m' }, 'notify.flapping.changes', /must be a whole number$/],
    [{ changes: 4 }, 'notify.flapping.window', /./],
    [{ changes: 4, window: 30 }, 'notify.flapping.window', /has no unit/],
    [{ changes: 4, window: '90s' }, 'notify.flapping.window', /must be at least twice poll_interval \(2m or more\)/],
    [{ changes: 4, window: '30m', after: '1h' }, 'notify.flapping.after', /unknown key/],
  ])('refuses notify.flapping %j, naming %s', (flapping, keyPath, why) => {
    expect(
      problemAt(keyPath, () =>
        load((doc) => {
          doc.notify = { flapping };
        }),
      ),
    ).toMatch(why);
  });

  it('sinks[].digest (SPEC §9): a cron line, read in digest_timezone (UTC by default)', () => {
    const config = load((doc) => {
      doc.sinks[0]!.digest = '0 9 * * 1-5';
      doc.sinks[0]!.digest_timezone = 'Europe/Paris';
      doc.sinks[1]!.digest = '30 17 * * *';
    });
    const [paris, utc] = [config.sinks[0]!.digest!, config.sinks[1]!.digest!];
    expect([paris.cron, paris.timezone, utc.timezone]).toEqual(['0 9 * * 1-5', 'Europe/Paris', 'UTC']);
    // Friday 2026-12-04 10:00 UTC: 09:00 in Paris was 08:00 UTC; the next is Monday's.
    const at = Date.UTC(2026, 11, 4, 10);
    expect([paris.latestAt(at), paris.nextAfter(at)]).toEqual([Date.UTC(2026, 11, 4, 8), Date.UTC(2026, 11, 7, 8)]);
    expect(load().sinks[0]!.digest).toBeUndefined();
  });

  it.each([
    [{ digest: '61 * * * *' }, 'sinks[0].digest', /"61 \* \* \* \*" is not a cron line riskwatch can use \(.*minute.*\): five fields, minute hour day month weekday, as in "0 9 \* \* 1-5"$/],
    [{ digest: 'every morning' }, 'sinks[0].digest', /is not a cron line/],
    [{ digest: '0 9 30 2 *' }, 'sinks[0].digest', /it never fires/],
    [{ digest: '0 9 * * *', digest_timezone: 'Mars/Olympus' }, 'sinks[0].digest_timezone', /"Mars\/Olympus" is not an IANA time zone/],
    [{ digest_timezone: 'UTC' }, 'sinks[0].digest_timezone', /has no digest to time/],
    [{ type: 'opsgenie', api_key: 'genie-key-1', url: undefined, mention: undefined, digest: '0 9 * * *' }, 'sinks[0].digest', /an Opsgenie sink cannot take a digest/],
  ])('refuses %j, naming %s', (fields, keyPath, why) => {
    expect(
      problemAt(keyPath, () =>
        load((doc) => {
          doc.sinks = [Object.fromEntries(Object.entries({ ...doc.sinks[0]!, events: undefined, min_level: undefined, ...fields }).filter(([, v]) => v !== undefined))];
        }),
      ),
    ).toMatch(why);
  });

  it('refuses max_age without a unit and below a minute', () => {
    problemAt('notify.max_age', () =>
      load((doc) => {
        doc.notify = { max_age: 30 };
      }),
    );
    problemAt('notify.max_age', () =>
      load((doc) => {
        doc.notify = { max_age: '30s' };
      }),
    );
  });

  it('refuses durations a timer cannot hold for long: poll_interval above 24h, max_age above 30d', () => {
    problemAt('poll_interval', () =>
      load((doc) => {
        doc.poll_interval = '30d';
      }),
    );
    problemAt('notify.max_age', () =>
      load((doc) => {
        doc.notify = { max_age: '31d' };
      }),
    );
  });

  it('trims header values and refuses line breaks inside them', () => {
    const config = load((doc) => {
      doc.sinks[1]!.headers = { Authorization: 'Bearer abc\n' };
    });
    const incidents = sink(config, 'incidents');
    expect(incidents.type === 'webhook' && incidents.headers.Authorization?.reveal()).toBe('Bearer abc');
    problemAt('sinks[1].headers.Authorization', () =>
      load((doc) => {
        doc.sinks[1]!.headers = { Authorization: 'Bearer abc\r\nX-Evil: 1' };
      }),
    );
  });

  it('refuses a header that frames the request (Content-Length, Host, …) or is no header name, saying why', () => {
    expect(problemAt('sinks[1].headers.X Team', () => load((doc) => (doc.sinks[1]!.headers = { 'X Team': 'a' })))).toContain('is not a valid header name');
    for (const name of ['Content-Length', 'transfer-encoding', 'Host', 'Connection']) {
      const problem = problemAt(`sinks[1].headers.${name}`, () =>
        load((doc) => {
          doc.sinks[1]!.headers = { [name]: '10' };
        }),
      );
      expect(problem).toContain('frames the request');
    }
  });

  it('refuses a header value HTTP cannot carry (beyond Latin-1, or a control character), naming the key and not the value', () => {
    const config = load((doc) => {
      doc.sinks[1]!.headers = { 'X-Team': 'Sécurité\tÉquipe' };
    });
    const incidents = sink(config, 'incidents');
    expect(incidents.type === 'webhook' && incidents.headers['X-Team']?.reveal()).toBe('Sécurité\tÉquipe');
    for (const value of ['Bearer tøken-✓-secret', 'Bearer token-€-secret', 'Bearer token-\u0007-secret', 'Bearer token-\u007f-secret']) {
      const problem = problemAt('sinks[1].headers.Authorization', () =>
        load((doc) => {
          doc.sinks[1]!.headers = { Authorization: value };
        }),
      );
      expect(problem).toMatch(/: sinks\[1\]\.headers\.Authorization: may hold only Latin-1 characters/);
      expect(problem).not.toContain('secret');
    }
    // A line break is still said as such, once.
    expect(
      problemAt('sinks[1].headers.Authorization', () =>
        load((doc) => {
          doc.sinks[1]!.headers = { Authorization: 'Bearer abc\r\nX-Evil: 1' };
        }),
      ),
    ).toMatch(/must not contain line breaks$/);
  });
});

describe('state is an SQLite file or a PostgreSQL database, not both', () => {
  const DATABASE_URL = 'postgres://riskwatch:s3cret-db-pass@db.internal:5432/riskwatch';

  it('takes state.postgres from ${DATABASE_URL} as a secret that prints without its password', () => {
    const config = load((doc) => (doc.state = { postgres: '${DATABASE_URL}' }), { ...ENV, DATABASE_URL });
    expect(config.state.kind).toBe('postgres');
    if (config.state.kind !== 'postgres') return;
    expect(config.state.url.reveal()).toBe(DATABASE_URL);
    expect(String(config.state.url)).toBe('postgres://riskwatch@db.internal:5432/riskwatch');
    expect(JSON.stringify(config)).not.toContain('s3cret-db-pass');
  });

  it('reads state.postgres_file, trimmed', () => {
    const secretFile = tmp.write('db-url', `${DATABASE_URL}\n`);
    const config = load((doc) => (doc.state = { postgres_file: secretFile }));
    expect(config.state.kind === 'postgres' && config.state.url.reveal()).toBe(DATABASE_URL);
  });

  it('refuses both at once', () => {
    expect(problemAt('state', () => load((doc) => (doc.state = { sqlite: './rw.db', postgres: DATABASE_URL })))).toMatch(/give sqlite or postgres, not both/);
  });

  it('refuses a value that is not a PostgreSQL URL, without echoing it', () => {
    const problem = problemAt('state.postgres', () => load((doc) => (doc.state = { postgres: 'mysql://root:hunter2@db/x' })));
    expect(problem).toMatch(/must be a PostgreSQL URL/);
    expect(problem).not.toContain('hunter2');
  });
});

describe('http.console and http.token (SPEC §10)', () => {
  const TOKEN = 'console-token-9b7e4c2a1f3d5e60a8';
  const consoleOn =
    (listen: string, http: Record<string, unknown> = {}) =>
    (doc: ConfigDoc) =>
      (doc.http = { listen, console: true, ...http });

  it.each(['0.0.0.0:9464', '[::]:9464', '10.1.2.3:9464', 'riskwatch.internal:9464'])('a console on %s without a token is a problem naming http.token', (listen) => {
    const problem = problemAt('http.token', () => load(consoleOn(listen)));
    expect(problem).toMatch(/required when http\.console is on/);
  });

  it('with a token it loads, the token kept as a secret', () => {
    const config = load(consoleOn('0.0.0.0:9464', { token: TOKEN }));
    expect(config.http.console).toBe(true);
    expect(config.http.listen).toEqual({ host: '0.0.0.0', port: 9464 });
    expect(config.http.token?.reveal()).toBe(TOKEN);
    expect(String(config.http.token)).not.toContain(TOKEN);
  });

  it.each(['127.0.0.1:9464', 'localhost:9464', '[::1]:9464', '127.0.0.2:80'])('on the loopback (%s) a console needs no token', (listen) => {
    const config = load(consoleOn(listen));
    expect(config.http.console).toBe(true);
    expect(config.http.token).toBeUndefined();
  });

  it('without the console, a public listen needs no token; the console is off by default', () => {
    const config = load((doc) => (doc.http = { listen: '0.0.0.0:9464' }));
    expect(config.http.console).toBe(false);
    expect(config.http.token).toBeUndefined();
  });

  it.each([
    ['short', 'tok-123456789'],
    ['short once trimmed', `  ${'t'.repeat(15)}  `],
  ])('a token too %s is a problem naming http.token, without echoing it', (_, token) => {
    const problem = problemAt('http.token', () => load(consoleOn('0.0.0.0:9464', { token })));
    expect(problem).toMatch(/at least 16 characters/);
    expect(problem).not.toContain(token.trim());
  });

  it('token_file is read relative to the config, trimmed; ${VAR} works too', () => {
    tmp.write('secrets/console-token', `${TOKEN}\n`);
    expect(load(consoleOn('0.0.0.0:9464', { token_file: 'secrets/console-token' })).http.token?.reveal()).toBe(TOKEN);
    expect(load(consoleOn('0.0.0.0:9464', { token: '${RISKWATCH_CONSOLE_TOKEN}' }), { ...ENV, RISKWATCH_CONSOLE_TOKEN: TOKEN }).http.token?.reveal()).toBe(TOKEN);
  });

  it('token_file: a missing file, an empty one, or both keys are problems naming the key', () => {
    expect(problemAt('http.token_file', () => load(consoleOn('0.0.0.0:9464', { token_file: 'no/such/token' })))).toMatch(/no such file/);
    tmp.write('empty-token', '\n');
    const empty = problemsOf(() => load(consoleOn('0.0.0.0:9464', { token_file: 'empty-token' })));
    expect(empty.some((p) => p.includes(': http.token_file: ') && /is empty/.test(p))).toBe(true);
    tmp.write('console-token', `${TOKEN}\n`);
    expect(problemAt('http', () => load(consoleOn('0.0.0.0:9464', { token: TOKEN, token_file: 'console-token' })))).toMatch(/give token or token_file, not both/);
  });

  it('the token appears nowhere check-config prints, valid or not', async () => {
    const run = async (edit: (doc: ConfigDoc) => void) => {
      const out: string[] = [];
      const err: string[] = [];
      const code = await main(['check-config', '--config', tmp.write('riskwatch.yaml', configYaml(edit))], { out: (l) => out.push(l), err: (l) => err.push(l), env: ENV });
      return { code, text: [...out, ...err].join('\n') };
    };
    const valid = await run(consoleOn('0.0.0.0:9464', { token: TOKEN }));
    expect(valid.code).toBe(0);
    expect(valid.text).toContain('config is valid');
    expect(valid.text).not.toContain(TOKEN);
    // A problem elsewhere in the same file: the token is still not shown.
    const invalid = await run((doc) => {
      consoleOn('0.0.0.0:9464', { token: TOKEN })(doc);
      doc.poll_interval = 'often';
    });
    expect(invalid.code).toBe(2);
    expect(invalid.text).not.toContain(TOKEN);
    const short = await run(consoleOn('0.0.0.0:9464', { token: 'tok-123456789' }));
    expect(short.code).toBe(2);
    expect(short.text).toContain('http.token');
    expect(short.text).not.toContain('tok-123456789');

    const config = load(consoleOn('0.0.0.0:9464', { token: TOKEN }));
    expect(summarizeConfig(config)).not.toContain(TOKEN);
    expect(JSON.stringify(config)).not.toContain(TOKEN);
  });
});
