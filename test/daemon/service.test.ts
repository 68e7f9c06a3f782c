import path from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.ts';
import { Service } from '../../src/daemon/service.ts';
import { createLogger } from '../../src/log.ts';
import { FakeRiskApi } from '../../src/simulator/fake-api.ts';
import { seedUsers, TOKEN } from '../support/cloudflare.ts';
import { makeTempDir, type TempDir } from '../support/config-files.ts';
import { writeDaemonConfig } from '../support/daemon-config.ts';

let api: FakeRiskApi | undefined;
let service: Service | undefined;
let tmp: TempDir | undefined;
afterEach(async () => {
  await service?.stop();
  await api?.close();
  tmp?.remove();
  service = api = tmp = undefined;
});

/** A logger that resolves `committed` at the first poll committed: no waiting on timers. */
function loggerWaitingForAPoll() {
  let committed!: () => void;
  const firstPoll = new Promise<void>((resolve) => (committed = resolve));
  const destination = new Writable({
    write(chunk, _encoding, done) {
      if (String(chunk).includes('"msg":"first poll of the account committed"')) committed();
      done();
    },
  });
  return { log: createLogger('info', { destination }), firstPoll };
}

describe('Service.reload', () => {
  it('drops the metrics of an account renamed by the reload', { timeout: 20_000 }, async () => {
    api = await FakeRiskApi.start();
    seedUsers(api, 3);
    tmp = makeTempDir();
    const file = path.join(tmp.dir, 'riskwatch.yaml');
    const sinks = '  - name: console\n    type: console\n';
    const config = loadConfig(writeDaemonConfig(file, { apiBaseUrl: api.baseUrl, sinks, pollInterval: '1h' }), { CF_TOKEN: TOKEN });
    const { log, firstPoll } = loggerWaitingForAPoll();
    service = await Service.start(config, { log, writeLine: () => {} });
    await firstPoll;
    const metrics = async () => (await fetch(`http://${service!.httpAddress}/metrics`)).text();
    expect(await metrics()).toContain('riskwatch_users_tracked{account="production"} 3');

    const renamed = { ...config, accounts: config.accounts.map((a) => ({ ...a, name: 'renamed', label: 'renamed' })) };
    await service.reload(renamed);
    const text = await metrics();
    expect(text).toContain('riskwatch_account_leader{account="renamed"} 1');
    expect(text).not.toContain('account="production"');
  });
});
