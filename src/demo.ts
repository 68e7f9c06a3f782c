import { parseConfig } from './config/load.ts';
import { UserFacingError } from './errors.ts';
import { Service } from './daemon/service.ts';
import { configuredLogger } from './log.ts';
import { SIMULATED_ACCOUNT, startSimulatedTenant } from './simulator/tenant.ts';

const fs = process.getBuiltinModule('node:fs');
const os = process.getBuiltinModule('node:os');
const path = process.getBuiltinModule('node:path');

/**
 * `demo`: no credentials, no network. A simulated risk-scoring API on
 * loopback whose tenant changes every two seconds, and the real daemon
 * polling it with a console sink, so alerts flow within seconds.
 * Resolves when `stopped` does (Ctrl-C), after cleaning up.
 */
export async function runDemo(out: (line: string) => void, stopped: Promise<unknown>): Promise<void> {
  const tenant = await startSimulatedTenant();
  const { api } = tenant;
  let dir: string;
  try {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'riskwatch-demo-'));
  } catch (error) {
    await tenant.close();
    throw new UserFacingError(
      `demo: cannot create its state directory in ${os.tmpdir()} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); set TMPDIR to a writable directory`,
      2,
    );
  }
  const config = parseConfig(
    `cloudflare:
  api_base_url: ${api.baseUrl}
  api_token: demo-token
accounts:
  - id: ${SIMULATED_ACCOUNT}
    name: demo-corp
poll_interval: 2s
notify:
  lowered: true
  flapping:
    changes: 4
    window: 30s
state:
  sqlite: ./demo.db
sinks:
  - name: console
    type: console
http:
  listen: 127.0.0.1:0
  console: true
log:
  level: warn
  format: pretty
`,
    path.join(dir, 'demo.yaml'),
    {},
  );
  const log = await configuredLogger({ ...config.log, format: 'pretty' });
  const service = await Service.start(config, { log, writeLine: out }).catch(async (error: unknown) => {
    await tenant.close();
    fs.rmSync(dir, { recursive: true, force: true });
    throw error;
  });
  out(`riskwatch demo: a simulated Cloudflare risk-scoring API (${tenant.users} users, ${tenant.behaviors} behaviors) runs at ${api.baseUrl}`);
  out(`riskwatch polls it every 2 s and prints each alert below; the web console is at http://${service.httpAddress}/ and metrics at /metrics. Ctrl-C to stop.`);
  try {
    await stopped;
  } finally {
    await service.stop();
    await tenant.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
