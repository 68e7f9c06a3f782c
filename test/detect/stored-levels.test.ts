import { describe, expect, it } from 'vitest';
import { StoredLevels } from '../../src/detect/stored-levels.ts';
import { riskUser } from '../support/snapshots.ts';

describe('StoredLevels: the stored levels, read as a map, marking read by read who is still at their level', () => {
  const tracker = () => {
    const t = new StoredLevels([
      ['a', 'low'],
      ['b', 'high'],
    ]);
    t.beginRead();
    return t;
  };

  it('reads as the map of stored levels', () => {
    const t = tracker();
    t.see(riskUser('a', 'low'));
    expect(new Map(t)).toEqual(
      new Map([
        ['a', 'low'],
        ['b', 'high'],
      ]),
    );
    expect([t.get('a'), t.get('c'), t.has('b'), t.size]).toEqual(['low', undefined, true, 2]);
    expect([...t.keys()]).toEqual(['a', 'b']);
    expect([...t.values()]).toEqual(['low', 'high']);
  });

  it('says first, then again, for a user at their stored level; changed for another level or a newcomer', () => {
    const t = tracker();
    expect(t.see(riskUser('a', 'low'))).toBe('first');
    expect(t.see(riskUser('a', 'low'))).toBe('again');
    expect(t.see(riskUser('b', 'medium'))).toBe('changed');
    expect(t.see(riskUser('c', 'low'))).toBe('changed');
    expect(t.unchangedCount).toBe(1);
    expect([t.seenUnchanged('a'), t.seenUnchanged('b'), t.seenUnchanged('c')]).toEqual([true, false, false]);
  });

  it('starts every read afresh', () => {
    const t = tracker();
    t.see(riskUser('a', 'low'));
    t.beginRead();
    expect(t.seenUnchanged('a')).toBe(false);
    expect(t.unchangedCount).toBe(0);
    expect(t.see(riskUser('a', 'low'))).toBe('first');
  });

  it('takes a mark back when a later record of the user shows another level', () => {
    const t = tracker();
    t.see(riskUser('a', 'low'));
    t.unsee('a');
    expect([t.seenUnchanged('a'), t.unchangedCount]).toEqual([false, 0]);
    t.unsee('a');
    expect(t.unchangedCount).toBe(0);
  });

  it('follows a commit: new levels, new users, users gone', () => {
    const t = tracker();
    t.apply({ upsertUsers: [riskUser('b', 'medium'), riskUser('c', 'low')], removeUserIds: ['a'], upsertBehaviors: [], removeBehaviorIds: [] });
    t.beginRead();
    expect(t.see(riskUser('a', 'low'))).toBe('changed');
    expect(t.see(riskUser('b', 'medium'))).toBe('first');
    expect(t.see(riskUser('c', 'low'))).toBe('first');
  });
});
