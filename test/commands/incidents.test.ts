import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isIncidentSink } from '../../src/config/config.ts';
import { loadConfig } from '../../src/config/load.ts';
import { SqliteStore } from '../../src/store/sqlite.ts';
import { ENV } from '../support/config-files.ts';
import { ACCOUNT, planned, pollCommit, riskUser, userEvent } from '../support/store-fixtures.ts';
import { ACCOUNT_ID, type Cli, columns, iso, makeCli } from './cli.ts';

let cli: Cli;
const AT = Date.now() - 3_600_000;
beforeEach(() => {
  cli = makeCli((doc) => {
    doc.sinks.push({ name: 'oncall', type: 'pagerduty', routing_key: 'R0UT1NGKEYcliAAAAAAAAAAAAAAAAAAA' });
  });
});
afterEach(() => cli.tmp.remove());

/** Users 1 and 2 rose; oncall opened an incident for each, user 2's with a key the config no longer has. */
async function seed(credentialId: string): Promise<void> {
  const store = SqliteStore.open(cli.stateFile);
  try {
    const events = [userEvent('evt-1', riskUser(1, 'high'), 'low', 'high', AT), userEvent('evt-2', riskUser(2, 'high'), 'low', 'high', AT)];
    const key = (n: number) => `riskwatch/${ACCOUNT.id}/user/${riskUser(n).user_id}`;
    await store.commitPoll(
      pollCommit({
        polledAt: AT,
        events,
        deliveries: [
          { ...planned('oncall', [events[0]!]), incident: { action: 'open', key: key(1), credentialId } },
          { ...planned('oncall', [events[1]!]), incident: { action: 'open', key: key(2), credentialId: 'cred-00000000' } },
        ],
      }),
    );
  } finally {
    await store.close();
  }
}

describe('incidents', () => {
  it('--json: each open incident, its key, account, credential (and whether the sink still has it), when and by which event', async () => {
    const credential = await credentialOfOncall();
    await seed(credential);
    const listed = (await cli.json(['incidents'])) as Record<string, unknown>[];
    expect(listed).toEqual([
      {
        sink: 'oncall',
        key: `riskwatch/${ACCOUNT_ID}/user/${riskUser(1).user_id}`,
        account: { id: ACCOUNT_ID, name: 'production' },
        subject: `${ACCOUNT_ID}/user/${riskUser(1).user_id}`,
        credential,
        configured: true,
        opened_at: iso(AT),
        event_id: 'evt-1',
        trigger: 'pending',
      },
      expect.objectContaining({ event_id: 'evt-2', credential: 'cred-00000000', configured: false }),
    ]);
    expect(await cli.json(['incidents', '--sink', 'elsewhere'])).toEqual([]);
  });

  it('as a table, and says when there is none', async () => {
    expect((await cli.run(['incidents'])).out).toEqual(['no open incidents']);
    await seed(await credentialOfOncall());
    const { out } = await cli.run(['incidents']);
    expect(out[0]).toMatch(/^SINK +KEY +ACCOUNT +OPENED +TRIGGER +CREDENTIAL$/);
    expect(columns(out).map((row) => [row.SINK, row.ACCOUNT, row.TRIGGER, row.CREDENTIAL!.endsWith('(not configured)')])).toEqual([
      ['oncall', 'production', 'pending', false],
      ['oncall', 'production', 'pending', true],
    ]);
  });
});

/** oncall's credential id, as the config makes it. */
async function credentialOfOncall(): Promise<string> {
  const oncall = loadConfig(cli.config, ENV).sinks.find((s) => s.name === 'oncall')!;
  return isIncidentSink(oncall) ? oncall.credentialId : '';
}
