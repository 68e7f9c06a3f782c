import { afterEach, describe, expect, it } from 'vitest';
import { FakeRiskApi } from '../../src/simulator/fake-api.ts';
import { ACCOUNT } from '../support/cloudflare.ts';

let api: FakeRiskApi | undefined;
afterEach(async () => {
  await api?.close();
  api = undefined;
});

describe('FakeRiskApi.requests', () => {
  it('keeps only the latest requests, with their headers, up to maxRecorded', async () => {
    api = await FakeRiskApi.start({ maxRecorded: 3 });
    api.account(ACCOUNT);
    for (let i = 1; i <= 5; i++) {
      await (await fetch(`${api.baseUrl}/accounts/${ACCOUNT}/zt_risk_scoring/behaviors?n=${i}`, { headers: { authorization: `Bearer token-${i}` } })).text();
    }
    expect(api.requests.map((r) => r.query.get('n'))).toEqual(['3', '4', '5']);
    expect(api.requests.map((r) => r.headers.authorization)).toEqual(['Bearer token-3', 'Bearer token-4', 'Bearer token-5']);
  });

  it('keeps nothing when maxRecorded is 0 (the demo), yet still answers and consults the fault hook', async () => {
    api = await FakeRiskApi.start({ maxRecorded: 0 });
    api.account(ACCOUNT);
    const seen: string[] = [];
    api.fault = (request) => {
      seen.push(request.call);
      return undefined;
    };
    const response = await fetch(`${api.baseUrl}/accounts/${ACCOUNT}/zt_risk_scoring/behaviors`, { headers: { authorization: 'Bearer demo-token' } });
    expect(response.status).toBe(200);
    await response.text();
    expect(seen).toEqual(['behaviors']);
    expect(api.requests).toEqual([]);
  });
});
