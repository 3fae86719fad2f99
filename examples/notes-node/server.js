'use strict';
// A small notes service on Node's built-in http module: the example safedeploy deploys for a
// team that does not write Python. POST /notes with {"text": "..."} answers 201 and the note,
// GET /notes/ID the note, GET /health "ok". A handler's error is logged with its stack and
// answered 500, as most Node services do.
const http = require('node:http');
const { Notes, BadRequest, render } = require('./lib/notes');

const MAX_BODY = 64 * 1024;
const notes = new Notes();

function send(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function readJson(req) {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks = [];
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        reject(new BadRequest(`the body is larger than ${MAX_BODY} bytes`));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch {
        reject(new BadRequest('the body is not JSON'));
      }
    });
    req.on('error', reject);
  });
}

async function handle(req, res) {
  const url = new URL(req.url, 'http://localhost');
  if (req.method === 'GET' && url.pathname === '/health') {
    return send(res, 200, { status: 'ok' });
  }
  if (req.method === 'POST' && url.pathname === '/notes') {
    const note = notes.add(await readJson(req));
    return send(res, 201, render(note));
  }
  const one = url.pathname.match(/^\/notes\/(\d+)$/);
  if (req.method === 'GET' && one) {
    const note = notes.get(Number(one[1]));
    return note ? send(res, 200, render(note)) : send(res, 404, { error: 'no such note' });
  }
  return send(res, 404, { error: 'not found' });
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((err) => {
    if (err instanceof BadRequest) {
      return send(res, 400, { error: err.message });
    }
    console.error(err);
    return send(res, 500, { error: 'internal error' });
  });
});

const port = Number(process.env.PORT || 3000);
server.listen(port, '127.0.0.1', () => console.log(`notes listening on 127.0.0.1:${port}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
