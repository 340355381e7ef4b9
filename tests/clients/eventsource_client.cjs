// A minimal HTTP+SSE MCP client on the `eventsource` package (pinned in
// package.json; the EventSource the TypeScript SDK itself uses), which
// reconnects by itself with `Last-Event-ID` the way browsers do. Driven by
// tests/tests/http_sse.rs.
//
// Usage: node eventsource_client.cjs <sse url>
//   Initializes, starts analyze_data(8) with progress, prints
//   `KILL <instance>` at its first progress (the test SIGKILLs that
//   gateway), waits for the result across the reconnect, then prints
//   `REPORT <json>` with every event (id, progress, result), every GET (the
//   `Last-Event-ID` it carried, the gateway that served it) and every
//   `endpoint` event. Node modules come from $JETWAY_CLIENTS_NODE_MODULES.
'use strict';
const path = require('node:path');
const { createRequire } = require('node:module');
const req = createRequire(path.join(process.env.JETWAY_CLIENTS_NODE_MODULES, 'x.js'));
const { EventSource } = req('eventsource');

const url = process.argv[2];
const report = { gets: [], posts: [], endpoints: [], events: [] };
const waiting = new Map();
const t0 = Date.now();
let endpoint;
let announced = false;

async function recordingFetch(input, init) {
  const headers = new Headers(init && init.headers);
  const resp = await fetch(input, init);
  report.gets.push({ t: Date.now() - t0, status: resp.status, instance: resp.headers.get('jetway-instance'), lastEventId: headers.get('last-event-id') });
  return resp;
}

function post(message) {
  return fetch(endpoint, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(message) })
    .then((r) => { report.posts.push({ status: r.status, instance: r.headers.get('jetway-instance') }); return r; });
}

function answer(id, ms) {
  return new Promise((resolve, reject) => {
    waiting.set(id, resolve);
    setTimeout(() => reject(new Error(`no answer to ${id} within ${ms} ms`)), ms);
  });
}

async function main() {
  const es = new EventSource(url, { fetch: recordingFetch });
  const opened = new Promise((resolve) => {
    es.addEventListener('endpoint', (ev) => {
      report.endpoints.push({ id: ev.lastEventId, data: ev.data });
      endpoint = new URL(ev.data, url).href;
      resolve();
    });
  });
  es.onerror = (e) => { report.errors = (report.errors || 0) + 1; };
  es.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    const e = { t: Date.now() - t0, id: ev.lastEventId };
    if (msg.method === 'notifications/progress') {
      e.progress = msg.params.progress;
      if (!announced) {
        announced = true;
        process.stdout.write(`KILL ${report.gets[report.gets.length - 1].instance}\n`);
      }
    }
    if (msg.method) e.method = msg.method;
    if ('result' in msg || 'error' in msg) { e.responseTo = msg.id; e.result = msg.result && msg.result.structuredContent; }
    report.events.push(e);
    if (e.responseTo !== undefined && waiting.has(msg.id)) waiting.get(msg.id)(msg);
  };
  await opened;
  const init = answer(0, 20000);
  await post({ jsonrpc: '2.0', id: 0, method: 'initialize', params: {
    protocolVersion: '2024-11-05', capabilities: {}, clientInfo: { name: 'eventsource-client', version: '1' } } });
  report.protocolVersion = (await init).result.protocolVersion;
  await post({ jsonrpc: '2.0', method: 'notifications/initialized' });
  const done = answer(1, 45000);
  await post({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: {
    name: 'analyze_data', arguments: { num_items: 8 }, _meta: { progressToken: 'p1' } } });
  report.result = (await done).result.structuredContent;
  es.close();
}

main().then(
  () => { process.stdout.write(`REPORT ${JSON.stringify(report)}\n`); process.exit(0); },
  (e) => { report.fatal = String(e && e.stack || e); process.stdout.write(`REPORT ${JSON.stringify(report)}\n`); process.exit(1); },
);
