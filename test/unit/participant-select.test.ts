import { describe, expect, it } from 'vitest';
import { DefinitionError } from '../../src/errors.js';
import { parseNameList, selectParticipants } from '../../src/participant/select.js';

const all = [{ name: 'stock' }, { name: 'payment' }, { name: 'shipping' }];

describe('selectParticipants', () => {
  it('no selection runs all; only keeps the named (in module order); exclude drops them', () => {
    expect(selectParticipants(all).map((p) => p.name)).toEqual(['stock', 'payment', 'shipping']);
    expect(selectParticipants(all, { only: ['shipping', 'stock'] }).map((p) => p.name)).toEqual(['stock', 'shipping']);
    expect(selectParticipants(all, { exclude: ['payment'] }).map((p) => p.name)).toEqual(['stock', 'shipping']);
    expect(selectParticipants(all, { exclude: ['stock', 'payment', 'shipping'] })).toEqual([]);
  });

  it('unknown names, an empty list or both lists are definition errors naming the known participants', () => {
    expect(() => selectParticipants(all, { only: ['paymnt'] })).toThrow(new DefinitionError("unknown participant paymnt; the module's participants are: stock, payment, shipping"));
    expect(() => selectParticipants([], { exclude: ['x', 'y'] })).toThrow("unknown participants x, y; the module's participants are: none");
    expect(() => selectParticipants(all, { only: [] })).toThrow('the participant list is empty');
    expect(() => selectParticipants(all, { only: ['stock'], exclude: ['payment'] })).toThrow('not both');
  });

  it('parseNameList trims and drops empty items', () => {
    expect(parseNameList(' payment, stock ,,')).toEqual(['payment', 'stock']);
    expect(parseNameList(' , ')).toEqual([]);
  });
});
