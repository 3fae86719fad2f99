'use strict';
// The notes themselves: validation, storage in memory, and what a note looks like to clients.

const MAX_TEXT = 1000;

class BadRequest extends Error {}

function cleanText(input) {
  if (input === null || typeof input !== 'object' || typeof input.text !== 'string') {
    throw new BadRequest('expected {"text": "..."}');
  }
  const text = input.text.trim();
  if (text === '') {
    throw new BadRequest('the text is empty');
  }
  if (text.length > MAX_TEXT) {
    throw new BadRequest(`the text is longer than ${MAX_TEXT} characters`);
  }
  return text;
}

class Notes {
  constructor() {
    this.items = new Map();
    this.next = 1;
  }

  add(input) {
    const note = { id: this.next, text: cleanText(input), created: new Date().toISOString() };
    this.next += 1;
    this.items.set(note.id, note);
    return note;
  }

  get(id) {
    return this.items.get(id);
  }
}

function render(note) {
  return { id: note.id, text: note.text, created: note.created };
}

module.exports = { Notes, BadRequest, cleanText, render, MAX_TEXT };
