import type { Config, Credential, SinkConfig } from './config.ts';
import { formatDuration } from './duration.ts';

/** What `check-config` prints: the shape of the config, every secret masked. */
export function summarizeConfig(config: Config): string {
  const lines = [
    `config: ${config.file}`,
    `cloudflare: ${config.cloudflare.apiBaseUrl} (budget ${config.cloudflare.requestsPer5Min} requests / 5 min per credential, summary_paging ${config.cloudflare.summaryPaging})`,
    `accounts (${config.accounts.length}):`,
    ...config.accounts.map((a) => `  - ${a.id}${a.name ? ` "${a.name}"` : ''}: ${describeCredential(a.credential)}`),
    `poll_interval: ${formatDuration(config.pollIntervalMs)}, first_run: ${config.firstRun}, notify.lowered: ${config.notify.lowered}, notify.enrich: ${config.notify.enrich}, notify.max_age: ${formatDuration(config.notify.maxAgeMs)}, notify.flapping: ${config.notify.flapping ? `${config.notify.flapping.changes} changes in ${formatDuration(config.notify.flapping.windowMs)}` : 'off'}`,
    config.state.kind === 'sqlite' ? `state: sqlite ${config.state.file}` : `state: postgres ${config.state.url.masked}`,
    `sinks (${config.sinks.length}):`,
    ...config.sinks.map((sink) => `  - ${describeSink(sink, config)}`),
    `http: ${config.http.listen.host}:${config.http.listen.port} (/healthz, /readyz, /metrics${config.http.console ? `; the web console and /api/, ${config.http.token ? 'behind http.token' : 'open to this host only (no http.token)'}` : ''})`,
    `log: ${config.log.level}, ${config.log.format}`,
  ];
  return lines.join('\n');
}

function describeCredential(credential: Credential): string {
  return credential.scheme === 'token' ? `api token ${credential.token.masked} (${credential.id})` : `global key ${credential.key.masked} for ${credential.email} (${credential.id})`;
}

function describeSink(sink: SinkConfig, config: Config): string {
  const parts = [`${sink.name} (${sink.type})`];
  switch (sink.type) {
    case 'slack':
    case 'teams':
    case 'webhook':
      parts.push(`url ${sink.url.masked}`);
      break;
    case 'email':
      parts.push(`smtp ${sink.smtp.masked}, from ${sink.from}, to ${sink.to.join(', ')}`);
      break;
    case 'pagerduty':
      parts.push(`${sink.url}, routing_key ${sink.routingKey.masked} (${sink.credentialId}), behaviors ${sink.behaviors}`);
      break;
    case 'opsgenie':
      parts.push(`${sink.url}, api_key ${sink.apiKey.masked} (${sink.credentialId})`);
      break;
    case 'console':
      break;
  }
  if (sink.type === 'slack' && sink.mention) parts.push(`mention ${sink.mention}`);
  if (sink.type === 'webhook') {
    if (sink.secret) parts.push(`signed (secret ${sink.secret.masked})`);
    const headers = Object.entries(sink.headers);
    if (headers.length > 0) parts.push(`headers ${headers.map(([name, value]) => `${name}: ${value.masked}`).join(', ')}`);
  }
  parts.push(`min_level ${sink.minLevel}`);
  if (sink.digest) parts.push(`digest "${sink.digest.cron}" ${sink.digest.timezone}`);
  parts.push(`events ${sink.events ? [...sink.events].join(', ') : 'all'}`);
  const labels = sink.accounts && config.accounts.filter((a) => sink.accounts!.has(a.id)).map((a) => a.label);
  parts.push(`accounts ${labels ? labels.join(', ') : 'all'}`);
  return parts.join(', ');
}
