import fs from 'node:fs';
import path from 'node:path';
import { ACCOUNT } from './cloudflare.ts';

/**
 * The config file of an end-to-end test: the fake API's account named
 * `production`, the API token from ${CF_TOKEN}, HTTP on an ephemeral loopback
 * port. `sinks` is the YAML of the sinks list; the state in a SQLite file, or
 * the PostgreSQL database at `postgres`; `http` more keys under `http:`
 * (`{ console: true, token: '${TOKEN}' }`); `extra` is more top-level YAML.
 */
export function writeDaemonConfig(
  file: string,
  options: {
    apiBaseUrl: string;
    sinks: string;
    state?: string;
    postgres?: string;
    pollInterval?: string;
    firstRun?: string;
    logLevel?: string;
    http?: Readonly<Record<string, string | boolean>>;
    extra?: string;
  },
): string {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(
    file,
    `cloudflare:
  api_base_url: ${options.apiBaseUrl}
  api_token: \${CF_TOKEN}
accounts:
  - id: ${ACCOUNT}
    name: production
poll_interval: ${options.pollInterval ?? '1s'}
first_run: ${options.firstRun ?? 'baseline'}
state:
  ${options.postgres === undefined ? `sqlite: ${options.state ?? './state.db'}` : `postgres: ${options.postgres}`}
sinks:
${options.sinks.trimEnd()}
http:
  listen: 127.0.0.1:0
${Object.entries(options.http ?? {})
  .map(([key, value]) => `  ${key}: ${value}\n`)
  .join('')}log:
  level: ${options.logLevel ?? 'info'}
${options.extra ?? ''}`,
  );
  return file;
}

/** A webhook sink's YAML, for `sinks`. */
export const webhookSinkYaml = (name: string, url: string, secret?: string) => `  - name: ${name}\n    type: webhook\n    url: ${url}\n${secret ? `    secret: ${secret}\n` : ''}`;
