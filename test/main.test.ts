import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { maskSecret } from '../src/config/secret.ts';
import { main } from '../src/main.ts';
import { PostgresStore } from '../src/store/postgres.ts';
import { freePort, freshDatabase } from './support/postgres.ts';
import { ACCOUNT_ID, type ConfigDoc, configYaml, ENV, makeTempDir, OTHER_ACCOUNT_ID, SECRETS, type TempDir } from './support/config-files.ts';

const REPO = path.resolve(import.meta.dirname, '..');

let tmp: TempDir;
beforeEach(() => {
  tmp = makeTempDir();
});
afterEach(() => {
  tmp.remove();
});

/** Runs the CLI in-process and captures what it printed, split into lines. */
async function cli(argv: string[], env: Record<string, string> = ENV) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { out: (line) => out.push(line), err: (line) => err.push(line), env });
  const lines = (chunks: string[]) => chunks.flatMap((chunk) => chunk.split('\n'));
  return { code, out: lines(out), err: lines(err), errCalls: err };
}

const writeConfig = (edit?: (doc: ConfigDoc) => void) => tmp.write('riskwatch.yaml', configYaml(edit));

describe('check-config on a valid config', () => {
  /** The base config plus one account per credential kind, so that every kind of secret is present. */
  const withEverySecret = (doc: ConfigDoc) => {
    doc.accounts.push(
      { id: OTHER_ACCOUNT_ID, name: 'staging', api_token: 'staging-token-8d31f0' },
      { id: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', name: 'legacy', api_email: 'ops@example.com', api_key: 'legacy-global-key-6a2b' },
    );
    doc.sinks.push(
      { name: 'oncall', type: 'pagerduty', routing_key: 'R0UT1NGKEYsecretpagerduty0000042' },
      { name: 'genie', type: 'opsgenie', api_key: 'genie-key-secret-4f1c', url: 'https://api.eu.opsgenie.com' },
      { name: 'channel', type: 'teams', url: 'https://prod-01.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?sig=teamssigsecret99' },
      { name: 'mail', type: 'email', smtp: 'smtp://mailer:smtppassword-77@mail.example.com:587', from: 'riskwatch@example.com', to: ['secops@example.com'] },
    );
  };

  it('exits 0 and prints a summary', async () => {
    const result = await cli(['check-config', '--config', writeConfig(withEverySecret)]);
    expect(result.code).toBe(0);
    expect(result.err).toEqual([]);
    const text = result.out.join('\n');
    expect(text).toContain(path.join(tmp.dir, 'riskwatch.yaml'));
    expect(text).toContain(ACCOUNT_ID);
    expect(text).toMatch(/secops \(slack\)/);
    expect(text).toMatch(/incidents \(webhook\)/);
    expect(text).toMatch(/oncall \(pagerduty\), https:\/\/events\.pagerduty\.com, routing_key \*\*\*\* \(cred-[0-9a-f]{8}\), behaviors change, min_level high/);
    expect(text).toMatch(/genie \(opsgenie\), https:\/\/api\.eu\.opsgenie\.com, api_key \*\*\*\* \(cred-[0-9a-f]{8}\), min_level high/);
    expect(text).toMatch(/mail \(email\), smtp smtp:\/\/mailer@mail\.example\.com:587, from riskwatch@example\.com, to secops@example\.com/);
    expect(text).toMatch(/poll_interval: 1m/);
    expect(text).toContain(path.join(tmp.dir, 'riskwatch.db'));
    expect(result.out.at(-1)).toBe('config is valid');
  });

  it.each([
    ['the global API token', SECRETS.token],
    ["an account's own API token", 'staging-token-8d31f0'],
    ['a global API key', 'legacy-global-key-6a2b'],
    ['the Slack webhook URL path', SECRETS.slackPath],
    ['the webhook URL path', SECRETS.webhookPath],
    ['the webhook signing secret', SECRETS.webhookSecretKey],
    ['a header value', 'headersecret-3c9d1e'],
    ['a PagerDuty routing key', 'R0UT1NGKEYsecretpagerduty0000042'],
    ['an Opsgenie API key', 'genie-key-secret-4f1c'],
    ["a Teams Workflows URL's signature", 'teamssigsecret99'],
    ['an SMTP password', 'smtppassword-77'],
  ])('never prints %s', async (_label, secret) => {
    const result = await cli(['check-config', '--config', writeConfig(withEverySecret)]);
    expect(result.code).toBe(0);
    expect(result.out.join('\n')).not.toContain(secret);
    expect(result.err.join('\n')).not.toContain(secret);
  });
});

describe('check-config on a bad config exits 2 with one line per problem', () => {
  const { SLACK_WEBHOOK_URL: _slack, ...envWithoutSlack } = ENV;

  it.each<[string, () => string, Record<string, string>, RegExp]>([
    ['a missing variable', () => writeConfig(), envWithoutSlack, /: sinks\[0\]\.url: environment variable SLACK_WEBHOOK_URL is not set$/],
    ['an unknown nested key', () => writeConfig((doc) => (doc.sinks[1]!.urll = 'x')), ENV, /: sinks\[1\]\.urll: unknown key$/],
    ['a bad duration', () => writeConfig((doc) => (doc.poll_interval = 'fast')), ENV, /: poll_interval: "fast" is not a duration/],
    ['a duration below 1s', () => writeConfig((doc) => (doc.poll_interval = '500ms')), ENV, /: poll_interval: must be at least 1s/],
    ['a YAML syntax error', () => tmp.write('riskwatch.yaml', 'accounts:\n\t- id: x\n'), ENV, /riskwatch\.yaml:2:1: YAML syntax error: /],
    ['a missing file', () => path.join(tmp.dir, 'absent.yaml'), ENV, /absent\.yaml not found/],
    ['a directory', () => tmp.dir, ENV, /is a directory$/],
    ['an empty file', () => tmp.write('riskwatch.yaml', ''), ENV, /riskwatch\.yaml: the config file is empty$/],
    ['a top-level list', () => tmp.write('riskwatch.yaml', '- a\n- b\n'), ENV, /must be a YAML mapping/],
    ['no credential', () => writeConfig((doc) => (doc.cloudflare = {})), ENV, /: accounts\[0\]: no Cloudflare credential/],
    ['api_email without api_key', () => writeConfig((doc) => (doc.cloudflare = { api_email: 'ops@example.com' })), ENV, /: cloudflare\.api_key: is required/],
    ['api_token with api_email', () => writeConfig((doc) => (doc.cloudflare.api_email = 'ops@example.com')), ENV, /: cloudflare: give api_token or api_email \+ api_key, not both$/],
    ['duplicate sink names', () => writeConfig((doc) => (doc.sinks[1]!.name = 'secops')), ENV, /: sinks\[1\]\.name: "secops" is already used/],
    ['an account listed twice', () => writeConfig((doc) => doc.accounts.push({ id: ACCOUNT_ID })), ENV, /: accounts\[1\]\.id: .* is already used/],
    ['an unknown sink account', () => writeConfig((doc) => (doc.sinks[0]!.accounts = ['prod'])), ENV, /: sinks\[0\]\.accounts\[0\]: "prod" is not/],
    ['an unknown sink type', () => writeConfig((doc) => (doc.sinks[0]!.type = 'msteams')), ENV, /: sinks\[0\]\.type: must be one of/],
    ['a bad webhook secret', () => writeConfig(), { ...ENV, WEBHOOK_SECRET: 'hunter2' }, /: sinks\[1\]\.secret: must be a Standard Webhooks secret/],
    [
      'a missing secret file',
      () =>
        writeConfig((doc) => {
          doc.sinks[1]!.secret_file = 'nope';
          delete doc.sinks[1]!.secret;
        }),
      ENV,
      /: sinks\[1\]\.secret_file: cannot read /,
    ],
  ])('%s', async (_label, file, env, expected) => {
    const result = await cli(['check-config', '--config', file()], env);
    expect(result.code).toBe(2);
    expect(result.out).toEqual([]);
    expect(result.err).toHaveLength(1);
    expect(result.err[0]).toMatch(/^riskwatch: /);
    expect(result.err[0]).toMatch(expected);
  });

  it('does not echo an invalid URL', async () => {
    const url = 'hooks.slack.com/services/T0AAA1111/B0BBB2222/urlsecretpart';
    const result = await cli(['check-config', '--config', writeConfig()], { ...ENV, SLACK_WEBHOOK_URL: url });
    expect(result.code).toBe(2);
    expect(result.err).toHaveLength(1);
    expect(result.err[0]).toMatch(/^riskwatch: .*: sinks\[0\]\.url: must be an http\(s\) URL$/);
    expect(result.err[0]).not.toContain('urlsecretpart');
  });

  it('refuses a header value beyond Latin-1 in one line naming its key, without echoing it', async () => {
    const value = 'Bearer hdr✓secretpart';
    const result = await cli(['check-config', '--config', writeConfig((doc) => (doc.sinks[1]!.headers = { Authorization: value }))]);
    expect(result.code).toBe(2);
    expect(result.err).toHaveLength(1);
    expect(result.err[0]).toMatch(/^riskwatch: .*: sinks\[1\]\.headers\.Authorization: may hold only Latin-1 characters, and no control character but tab$/);
    expect(result.err[0]).not.toContain('secretpart');
  });

  it('prints each of several problems on its own line', async () => {
    const result = await cli(['check-config', '--config', writeConfig()], { CLOUDFLARE_API_TOKEN: SECRETS.token });
    expect(result.code).toBe(2);
    expect(result.errCalls).toHaveLength(2);
    expect(result.err).toEqual([
      expect.stringMatching(/^riskwatch: .*: sinks\[0\]\.url: environment variable SLACK_WEBHOOK_URL is not set$/),
      expect.stringMatching(/^riskwatch: .*: sinks\[1\]\.secret: environment variable WEBHOOK_SECRET is not set$/),
    ]);
  });
});

describe('usage errors exit 2 in one line naming what is wrong, and a pointer to --help', () => {
  it.each([
    ['an unknown command', ['frobnicate'], /^riskwatch: unknown command "frobnicate"$/],
    ['an unknown flag', ['check-config', '--verbose'], /^riskwatch: check-config: .*--verbose/],
    ['no command', [], /^riskwatch: no command given$/],
    ['an extra argument', ['check-config', 'extra'], /^riskwatch: check-config: unexpected argument "extra"$/],
    ['--config without its value', ['check-config', '--config'], /^riskwatch: .*--config/],
    ['--sink outside test-sinks', ['check-config', '--sink', 'secops'], /^riskwatch: check-config: .*--sink/],
    ['a group without its subcommand', ['silence'], /^riskwatch: silence: give one of add, list, expire$/],
    ['a flag of another command', ['users', '--reason', 'x'], /^riskwatch: users: .*--reason/],
  ])('%s', async (_label, argv, expected) => {
    const result = await cli(argv);
    expect(result.code).toBe(2);
    expect(result.out).toEqual([]);
    expect(result.err[0]).toMatch(expected);
    expect(result.err.slice(1)).toEqual(['run riskwatch --help for the commands and their options']);
  });

  it('--help prints the usage, built from every command, and exits 0', async () => {
    for (const flag of ['--help', '-h']) {
      const result = await cli([flag]);
      expect(result.code).toBe(0);
      expect(result.err).toEqual([]);
      expect(result.out[0]).toBe('usage: riskwatch <command> [options] [--config FILE]');
      for (const command of ['check-config', 'status [--json]', 'silence expire ID', 'deliveries retry (--sink S [--to NEW] | --id N...)']) expect(result.out.join('\n')).toContain(command);
    }
  });

  it('<command> --help prints that command’s usage', async () => {
    const result = await cli(['silence', 'add', '--help']);
    expect(result.code).toBe(0);
    expect(result.out[0]).toMatch(/^usage: riskwatch silence add \(--user U \| --behavior ID\)/);
  });
});

describe('the config file is --config, else $RISKWATCH_CONFIG, else ./riskwatch.yaml', () => {
  let cwd: string;
  let flagFile: string;
  let envFile: string;
  beforeEach(() => {
    cwd = process.cwd();
    flagFile = tmp.write('flag/riskwatch.yaml', configYaml());
    envFile = tmp.write('env/riskwatch.yaml', configYaml());
    tmp.write('cwd/riskwatch.yaml', configYaml());
    process.chdir(path.join(tmp.dir, 'cwd'));
  });
  afterEach(() => {
    process.chdir(cwd);
  });

  /** The `config:` line of check-config's summary: which file was read. */
  const fileRead = async (argv: string[], env: Record<string, string>) => {
    const result = await cli(['check-config', ...argv], env);
    expect(result.err).toEqual([]);
    expect(result.code).toBe(0);
    return result.out[0];
  };

  it('uses --config over RISKWATCH_CONFIG and the working directory', async () => {
    expect(await fileRead(['--config', flagFile], { ...ENV, RISKWATCH_CONFIG: envFile })).toBe(`config: ${flagFile}`);
  });

  it('resolves a relative --config against the working directory', async () => {
    expect(await fileRead(['--config', '../flag/riskwatch.yaml'], ENV)).toBe(`config: ${flagFile}`);
  });

  it('uses RISKWATCH_CONFIG over the working directory', async () => {
    expect(await fileRead([], { ...ENV, RISKWATCH_CONFIG: envFile })).toBe(`config: ${envFile}`);
  });

  it('falls back to ./riskwatch.yaml in the working directory', async () => {
    expect(await fileRead([], ENV)).toBe(`config: ${path.join(fs.realpathSync(tmp.dir), 'cwd', 'riskwatch.yaml')}`);
  });

  it('names the default file when there is none', async () => {
    fs.rmSync(path.join(tmp.dir, 'cwd', 'riskwatch.yaml'));
    const result = await cli(['check-config'], ENV);
    expect(result.code).toBe(2);
    expect(result.err).toEqual([expect.stringMatching(/^riskwatch: config file .*cwd\/riskwatch\.yaml not found/)]);
  });
});

describe('the real CLI process', () => {
  it('exits 2 with one line on stderr and no stack trace for a bad config', () => {
    const file = writeConfig((doc) => (doc.sinks[1]!.urll = 'x'));
    const child = spawnSync(path.join(REPO, 'node_modules/.bin/node'), ['src/main.ts', 'check-config', '--config', file], {
      cwd: REPO,
      env: { PATH: process.env.PATH ?? '', ...ENV },
      encoding: 'utf8',
      timeout: 15_000,
    });
    expect(child.error).toBeUndefined();
    expect(child.status).toBe(2);
    expect(child.stdout).toBe('');
    expect(child.stderr).toMatch(/^riskwatch: .*: sinks\[1\]\.urll: unknown key\n$/);
    expect(child.stderr).not.toContain('    at ');
  });
});

describe("the repository's config.example.yaml", () => {
  const example = path.join(REPO, 'config.example.yaml');
  const exampleEnv = {
    CLOUDFLARE_API_TOKEN: 'example-cf-token-4e7a',
    SLACK_WEBHOOK_URL: 'https://hooks.slack.com/services/T0EX/B0EX/examplesecret31',
    WEBHOOK_SECRET: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
  };

  it('passes check-config with its variables set, printing none of them', async () => {
    const result = await cli(['check-config', '--config', example], exampleEnv);
    expect(result.err).toEqual([]);
    expect(result.code).toBe(0);
    const text = result.out.join('\n');
    expect(text).toContain(`config: ${example}`);
    expect(text).not.toContain(exampleEnv.CLOUDFLARE_API_TOKEN);
    expect(text).not.toContain('examplesecret31');
    expect(text).not.toContain('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
  });

  it('its commented-out receivers pass check-config too, once uncommented', async () => {
    const text = fs.readFileSync(example, 'utf8');
    const [head, receivers] = text.split(/^ {2}# The receivers below are commented out.*\n/m) as [string, string];
    const uncommented = receivers.replace(/^ {2}# ( *(?:- name|[a-z_]+):)/gm, '  $1');
    const file = tmp.write('example-receivers.yaml', head + uncommented);
    const env = {
      ...exampleEnv,
      PAGERDUTY_ROUTING_KEY: 'examplepagerdutykey0000000000042',
      OPSGENIE_API_KEY: 'example-genie-key-91',
      TEAMS_WORKFLOW_URL: 'https://prod-01.westeurope.logic.azure.com/workflows/x/triggers/manual/paths/invoke?sig=examplesig13',
      SMTP_URL: 'smtps://mailer:examplesmtppw@mail.example.com:465',
    };
    const result = await cli(['check-config', '--config', file], env);
    expect(result.err).toEqual([]);
    expect(result.code).toBe(0);
    const out = result.out.join('\n');
    for (const name of ['oncall (pagerduty)', 'genie (opsgenie)', 'channel (teams)', 'mail (email)']) expect(out).toContain(name);
    for (const secret of ['examplepagerdutykey', 'example-genie-key-91', 'examplesig13', 'examplesmtppw']) expect(out).not.toContain(secret);
  });

  it('names each of its variables when it is missing', async () => {
    for (const name of Object.keys(exampleEnv)) {
      const env: Record<string, string> = { ...exampleEnv };
      delete env[name];
      const result = await cli(['check-config', '--config', example], env);
      expect(result.code).toBe(2);
      expect(result.err).toEqual([expect.stringMatching(new RegExp(`^riskwatch: .*: environment variable ${name} is not set$`))]);
    }
  });
});

describe('check-config asks a PostgreSQL store whether it answers, changing nothing', () => {
  const withDatabase = (url: string) => (doc: ConfigDoc) => {
    doc.state = { postgres: url };
  };

  it('reports a database that answers and has no schema yet, and leaves it without one', async () => {
    const url = await freshDatabase();
    const first = await cli(['check-config', '--config', writeConfig(withDatabase(url))]);
    expect(first.err).toEqual([]);
    expect(first.code).toBe(0);
    expect(first.out).toContain(`state database ${maskSecret(url)} answers; no schema yet: the first riskwatch to start creates it`);
    const again = await cli(['check-config', '--config', writeConfig(withDatabase(url))]);
    expect(again.out.join('\n')).toContain('no schema yet');
  });

  it('reports the schema version of a database riskwatch has used', async () => {
    const url = await freshDatabase();
    await (await PostgresStore.open(url)).close();
    const result = await cli(['check-config', '--config', writeConfig(withDatabase(url))]);
    expect(result.code).toBe(0);
    expect(result.out.join('\n')).toMatch(/answers; schema version \d+, current/);
  });

  it.each([
    ['a server that is not there', async () => `postgres://riskwatch:pw-7f3a9c@127.0.0.1:${await freePort()}/riskwatch`, /cannot connect: connection refused$/],
    ['a database that does not exist', async () => `${(await freshDatabase()).replace(/\/[^/]+$/, '/no_such_db')}`, /cannot connect: the database does not exist$/],
  ])('exits 2 with one line for %s', async (_label, urlOf, why) => {
    const url = await urlOf();
    const result = await cli(['check-config', '--config', writeConfig(withDatabase(url))]);
    expect(result.code).toBe(2);
    expect(result.errCalls).toHaveLength(1);
    expect(result.errCalls[0]).toMatch(new RegExp(`^riskwatch: state database ${escapeRegExp(maskSecret(url))}: `));
    expect(result.errCalls[0]).toMatch(why);
    expect(result.errCalls.join('\n')).not.toContain('pw-7f3a9c');
  });
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
