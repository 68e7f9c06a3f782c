import { UsageError } from '../errors.ts';
import { SIMULATED_ACCOUNT, startSimulatedTenant } from '../simulator/tenant.ts';
import { type Args, type Command, type Io, nextSignal, text } from './command.ts';

/**
 * `simulate [--port N]`: the demo's living tenant alone, on loopback, for
 * trying a config of one's own (sinks included) before real credentials:
 * prints its base URL, account id and a config snippet, then runs until
 * Ctrl-C.
 */
export const simulate: Command = {
  options: { port: { type: 'string' } },
  async run(args: Args, io: Io) {
    const portText = text(args, 'port') ?? '0';
    const port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
    if (!(port >= 0 && port <= 65535)) throw new UsageError(`--port ${portText}: not a port (0 to 65535; 0 picks a free one)`);
    const stop = nextSignal(['SIGINT', 'SIGTERM']);
    const tenant = await startSimulatedTenant(port);
    io.out(`riskwatch simulate: a simulated Cloudflare risk-scoring API (${tenant.users} users, ${tenant.behaviors} behaviors) at ${tenant.api.baseUrl}`);
    io.out(`account id ${SIMULATED_ACCOUNT}; any API token is accepted; risk changes every 2 s. Ctrl-C to stop.`);
    io.out('Put this in a config (with your sinks), then run check-config, once --dry-run, once or run against it:');
    io.out('');
    io.out(`cloudflare:
  api_base_url: ${tenant.api.baseUrl}
  api_token: simulated
accounts:
  - id: ${SIMULATED_ACCOUNT}
    name: simulated`);
    try {
      await stop;
    } finally {
      await tenant.close();
    }
    return 0;
  },
};
