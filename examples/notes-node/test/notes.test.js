'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { Notes, BadRequest, cleanText, render, MAX_TEXT } = require('../lib/notes');

test('a note is stored with its text trimmed and numbered from 1', () => {
  const notes = new Notes();
  const a = notes.add({ text: '  buy milk ' });
  const b = notes.add({ text: 'call Ann' });
  assert.deepStrictEqual([a.id, a.text, b.id], [1, 'buy milk', 2]);
  assert.strictEqual(notes.get(2).text, 'call Ann');
  assert.strictEqual(notes.get(3), undefined);
});

test('text that is missing, empty or too long is a bad request', () => {
  for (const input of [null, {}, { text: 3 }, { text: '   ' }, { text: 'x'.repeat(MAX_TEXT + 1) }]) {
    assert.throws(() => cleanText(input), BadRequest, JSON.stringify(input));
  }
  assert.strictEqual(cleanText({ text: 'x'.repeat(MAX_TEXT) }).length, MAX_TEXT);
});

test('a note is shown with its id, text and time', () => {
  const note = new Notes().add({ text: 'hello' });
  assert.deepStrictEqual(Object.keys(render(note)), ['id', 'text', 'created']);
});
