import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseConfig } from './config/load.ts';
import { UserFacingError } from './errors.ts';
import { Service } from './daemon/service.ts';
import { createLogger } from './log.ts';
import { FakeRiskApi } from './simulator/fake-api.ts';
import { DemoScenario } from './simulator/scenario.ts';

const DEMO_ACCOUNT = 'de30de30de30de30de30de30de30de30';
const STEP_MS = 2000;

/**
 * `demo`: no credentials, no network. A simulated risk-scoring API on
 * loopback whose tenant changes every two seconds, and the real daemon
 * polling it with a console sink, so alerts flow within seconds.
 * Resolves when `stopped` does (Ctrl-C), after cleaning up.
 */
export async function runDemo(out: (line: string) => void, stopped: Promise<unknown>): Promise<void> {
  // The demo reads nothing back from the API's request log: it keeps none (it would grow for as long as the demo runs).
  const api = await FakeRiskApi.start({ maxRecorded: 0 });
  const scenario = new DemoScenario(api.account(DEMO_ACCOUNT));
  scenario.seed(50);
  let dir: string;
  try {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'riskwatch-demo-'));
  } catch (error) {
    await api.close();
    throw new UserFacingError(`demo: cannot create its state directory in ${os.tmpdir()} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); set TMPDIR to a writable directory`, 2);
  }
  const config = parseConfig(
    `cloudflare:
  api_base_url: ${api.baseUrl}
  api_token: demo-token
accounts:
  - id: ${DEMO_ACCOUNT}
    name: demo-corp
poll_interval: 2s
notify:
  lowered: true
state:
  sqlite: ./demo.db
sinks:
  - name: console
    type: console
http:
  listen: 127.0.0.1:0
log:
  level: warn
  format: pretty
`,
    path.join(dir, 'demo.yaml'),
    {},
  );
  const log = createLogger(config.log.level, { pretty: true });
  const service = await Service.start(config, { log, writeLine: out });
  out(`riskwatch demo: a simulated Cloudflare risk-scoring API (50 users, ${scenario.behaviorCount} behaviors) runs at ${api.baseUrl}`);
  out(`riskwatch polls it every 2 s and prints each alert below; metrics at http://${service.httpAddress}/metrics. Ctrl-C to stop.`);
  const ticker = setInterval(() => scenario.step(), STEP_MS);
  try {
    await stopped;
  } finally {
    clearInterval(ticker);
    await service.stop();
    await api.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
