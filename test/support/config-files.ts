import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';

/** Config files for tests: one base document (SPEC §4's example, defaults left out) varied per test. */

export const ACCOUNT_ID = '023e105f4ecef8ad9ca31a8372d0c353';
export const OTHER_ACCOUNT_ID = '9a7806061c88ada191ed06f989cc3dac';

/** Every secret value a base config carries: none of them may ever be printed. */
export const SECRETS = {
  token: 'cf-token-a81f07d2c4e9',
  slackUrl: 'https://hooks.slack.com/services/T0AAA1111/B0BBB2222/slackpathsecret77',
  slackPath: '/services/T0AAA1111/B0BBB2222/slackpathsecret77',
  webhookUrl: 'https://hooks.example.com/in/webhookpathsecret55',
  webhookPath: '/in/webhookpathsecret55',
  webhookSecret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
  webhookSecretKey: 'MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
  headerValue: 'Bearer headersecret-3c9d1e',
} as const;

/** The environment the base config's `${VAR}`s refer to. */
export const ENV: Readonly<Record<string, string>> = {
  CLOUDFLARE_API_TOKEN: SECRETS.token,
  SLACK_WEBHOOK_URL: SECRETS.slackUrl,
  WEBHOOK_SECRET: SECRETS.webhookSecret,
};

export interface ConfigDoc {
  cloudflare: Record<string, unknown>;
  accounts: Record<string, unknown>[];
  sinks: Record<string, unknown>[];
  [key: string]: unknown;
}

/** SPEC §4's example with every key that has a default left out. */
export function baseConfig(): ConfigDoc {
  return {
    cloudflare: { api_token: '${CLOUDFLARE_API_TOKEN}' },
    accounts: [{ id: ACCOUNT_ID, name: 'production' }],
    sinks: [
      {
        name: 'secops',
        type: 'slack',
        url: '${SLACK_WEBHOOK_URL}',
        min_level: 'medium',
        events: ['user.risk_level_raised', 'behavior.disabled'],
        accounts: ['production'],
      },
      {
        name: 'incidents',
        type: 'webhook',
        url: SECRETS.webhookUrl,
        secret: '${WEBHOOK_SECRET}',
        headers: { 'X-Team': 'secops', Authorization: SECRETS.headerValue },
      },
    ],
  };
}

/** The base config as YAML, after `edit` changed it. */
export function configYaml(edit?: (doc: ConfigDoc) => void): string {
  const doc = baseConfig();
  edit?.(doc);
  return stringify(doc);
}

/** A temporary directory for config and secret files; `remove()` deletes it. */
export interface TempDir {
  readonly dir: string;
  /** Writes `text` to `name` (subfolders created) and returns the absolute path. */
  write(name: string, text: string): string;
  remove(): void;
}

export function makeTempDir(): TempDir {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rw-'));
  return {
    dir,
    write(name, text) {
      const file = path.join(dir, name);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, text);
      return file;
    },
    remove() {
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
