import { UserFacingError } from '../errors.ts';
import { FakeRiskApi } from './fake-api.ts';
import { DemoScenario } from './scenario.ts';

/** The simulated tenant's account id, the same every time (so a config pasted once keeps working). */
export const SIMULATED_ACCOUNT = 'de30de30de30de30de30de30de30de30';
const STEP_MS = 2000;
const USERS = 50;

export interface SimulatedTenant {
  readonly api: FakeRiskApi;
  readonly users: number;
  readonly behaviors: number;
  /** Stops the tenant's life and the API. */
  close(): Promise<void>;
}

/**
 * The living tenant of `demo` and `simulate`: the fake risk-scoring API on
 * loopback (`port`, 0 for any free one), 50 people whose risk changes every
 * two seconds and detections switched on and off. Any API token is accepted.
 */
export async function startSimulatedTenant(port = 0): Promise<SimulatedTenant> {
  // It reads nothing back from the API's request log: it keeps none (it would grow for as long as it runs).
  const api = await FakeRiskApi.start({ maxRecorded: 0 }, port).catch((error: NodeJS.ErrnoException) => {
    const why = error.code === 'EADDRINUSE' ? 'the port is already in use' : error.code === 'EACCES' ? 'permission denied' : (error.code ?? error.message);
    throw new UserFacingError(`--port ${port}: cannot listen on 127.0.0.1:${port}: ${why}`, 2);
  });
  const scenario = new DemoScenario(api.account(SIMULATED_ACCOUNT));
  scenario.seed(USERS);
  const ticker = setInterval(() => scenario.step(), STEP_MS);
  return {
    api,
    users: USERS,
    behaviors: scenario.behaviorCount,
    async close() {
      clearInterval(ticker);
      await api.close();
    },
  };
}
