import { describe, expect, it } from 'vitest';
import { UnchangedUsers } from '../../src/detect/unchanged.ts';
import { riskUser } from '../support/snapshots.ts';

describe('UnchangedUsers: marks, read by read, who is still at their stored level', () => {
  const tracker = () => {
    const t = new UnchangedUsers();
    t.load(new Map([['a', 'low'], ['b', 'high']]));
    t.begin();
    return t;
  };

  it('says first, then again, for a user at their stored level; changed for another level or a newcomer', () => {
    const t = tracker();
    expect(t.see(riskUser('a', 'low'))).toBe('first');
    expect(t.see(riskUser('a', 'low'))).toBe('again');
    expect(t.see(riskUser('b', 'medium'))).toBe('changed');
    expect(t.see(riskUser('c', 'low'))).toBe('changed');
    expect(t.count).toBe(1);
    expect([t.has('a'), t.has('b'), t.has('c')]).toEqual([true, false, false]);
  });

  it('starts every read afresh', () => {
    const t = tracker();
    t.see(riskUser('a', 'low'));
    t.begin();
    expect(t.has('a')).toBe(false);
    expect(t.count).toBe(0);
    expect(t.see(riskUser('a', 'low'))).toBe('first');
  });

  it('takes a mark back when a later record of the user shows another level', () => {
    const t = tracker();
    t.see(riskUser('a', 'low'));
    t.unsee('a');
    expect([t.has('a'), t.count]).toEqual([false, 0]);
    t.unsee('a');
    expect(t.count).toBe(0);
  });

  it('follows a commit: new levels, new users, users gone', () => {
    const t = tracker();
    t.apply({ upsertUsers: [riskUser('b', 'medium'), riskUser('c', 'low')], removeUserIds: ['a'], upsertBehaviors: [], removeBehaviorIds: [] });
    t.begin();
    expect(t.see(riskUser('a', 'low'))).toBe('changed');
    expect(t.see(riskUser('b', 'medium'))).toBe('first');
    expect(t.see(riskUser('c', 'low'))).toBe('first');
  });
});
