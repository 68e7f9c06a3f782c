import { format, inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { maskSecret, Secret } from '../../src/config/secret.ts';

const TOKEN = 'cf-token-5b2e9d41a7';
const SLACK_URL = 'https://hooks.slack.com/services/T0AAA1111/B0BBB2222/slackpathsecret77';

describe('a Secret never reveals its value when printed', () => {
  const secrets = [new Secret(TOKEN), new Secret(SLACK_URL)];
  const hidden = (text: string) => {
    expect(text).not.toContain(TOKEN);
    expect(text).not.toContain('slackpathsecret77');
    expect(text).not.toContain('/services/');
  };

  it.each(secrets)('through String() and template literals (%#)', (secret) => {
    hidden(String(secret));
    hidden(`${secret}`);
    hidden(`${secret}`);
  });

  it.each(secrets)('through JSON.stringify, alone and nested (%#)', (secret) => {
    hidden(JSON.stringify(secret));
    hidden(JSON.stringify({ sink: { url: secret }, list: [secret] }));
  });

  it.each(secrets)('through util.inspect, util.format and console-style formatting (%#)', (secret) => {
    hidden(inspect(secret));
    hidden(inspect({ deep: { deeper: { deepest: secret } } }, { depth: Infinity, showHidden: true }));
    hidden(format('%s %o %O %j', secret, secret, secret, secret));
  });

  it.each(secrets)('through its own enumerable keys (%#)', (secret) => {
    expect(Object.keys(secret)).toEqual([]);
    hidden(JSON.stringify({ ...secret }));
    hidden(inspect(structuredClone({ secret })));
  });

  it('reveals the value only when asked', () => {
    expect(new Secret(TOKEN).reveal()).toBe(TOKEN);
    expect(new Secret(SLACK_URL).reveal()).toBe(SLACK_URL);
  });

  it('prints a recognisable masked form', () => {
    expect(String(new Secret(TOKEN))).toBe('****');
    expect(JSON.stringify(new Secret(TOKEN))).toBe('"****"');
    expect(inspect(new Secret(SLACK_URL))).toBe('Secret(https://hooks.slack.com/****)');
  });
});

describe('a masked URL keeps only its origin', () => {
  it.each([
    [SLACK_URL, 'https://hooks.slack.com/****'],
    ['https://user:p4ssw0rd@hooks.example.com:8443/in/abc?token=q1w2e3#frag', 'https://hooks.example.com:8443/****'],
    ['http://127.0.0.1:9000/hook', 'http://127.0.0.1:9000/****'],
    ['HTTPS://Hooks.Example.COM/Path', 'https://hooks.example.com/****'],
  ])('%s → %s', (url, masked) => {
    expect(maskSecret(url)).toBe(masked);
    expect(new Secret(url).masked).toBe(masked);
  });

  it.each([
    ['a token', TOKEN],
    ['a whsec_ secret', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'],
    ['a string that only starts like a URL', 'https://'],
    ['a non-http URL', 'ftp://files.example.com/secret'],
    ['an empty string', ''],
  ])('masks %s entirely', (_label, value) => {
    expect(maskSecret(value)).toBe('****');
  });
});
