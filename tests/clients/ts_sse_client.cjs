// The TypeScript MCP SDK's SSEClientTransport (pinned in package.json), run
// as a user runs it, against a Jetway HTTP+SSE endpoint behind a load
// balancer. Driven by tests/tests/http_sse.rs.
//
// Usage: node ts_sse_client.cjs <sse url> [--kill]
//   Prints `REPORT <json>` last. With --kill it prints `KILL <instance>`
//   once the first progress of a long analyze_data arrives (the test then
//   SIGKILLs that gateway) and records what the client does afterwards.
//   Node modules come from $JETWAY_CLIENTS_NODE_MODULES.
'use strict';
const path = require('node:path');
const { createRequire } = require('node:module');
const req = createRequire(path.join(process.env.JETWAY_CLIENTS_NODE_MODULES, 'x.js'));
const { Client } = req('@modelcontextprotocol/sdk/client/index.js');
const { SSEClientTransport } = req('@modelcontextprotocol/sdk/client/sse.js');
const { CreateMessageRequestSchema } = req('@modelcontextprotocol/sdk/types.js');

const url = new URL(process.argv[2]);
const kill = process.argv.includes('--kill');
const report = { gets: [], posts: [], errors: [] };

// The transport's documented `fetch` option: every HTTP request it makes
// goes through here, so the report can say which gateway served what.
async function recordingFetch(input, init) {
  const method = (init && init.method) || 'GET';
  const headers = new Headers(init && init.headers);
  const resp = await fetch(input, init);
  const entry = { url: String(input), status: resp.status, instance: resp.headers.get('jetway-instance') };
  if (method === 'GET') {
    entry.lastEventId = headers.get('last-event-id');
    report.gets.push(entry);
  } else {
    report.posts.push(entry);
  }
  return resp;
}

function withTimeout(p, ms, what) {
  return Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error(`${what}: no answer within ${ms} ms`)), ms))]);
}

async function main() {
  const transport = new SSEClientTransport(url, { fetch: recordingFetch });
  const client = new Client({ name: 'ts-sse-client', version: '1' }, { capabilities: { sampling: {} } });
  client.onerror = (e) => report.errors.push(String(e && e.message || e));
  client.setRequestHandler(CreateMessageRequestSchema, async () => ({
    role: 'assistant', model: 'stub', content: { type: 'text', text: 'from ts' },
  }));
  await client.connect(transport);
  report.protocolVersion = client.getServerVersion() && transport._protocolVersion;
  report.endpoint = transport._endpoint && transport._endpoint.href;
  report.tools = (await client.listTools()).tools.length;
  report.counters = [];
  for (let i = 0; i < 10; i++) {
    const r = await client.callTool({ name: 'increment_counter', arguments: {} });
    report.counters.push(r.structuredContent.counter);
  }
  report.progress = [];
  const analysis = await client.callTool({ name: 'analyze_data', arguments: { num_items: 3 } }, undefined, {
    onprogress: (p) => report.progress.push(p.progress),
  });
  report.analysis = analysis.structuredContent;
  const sampled = await client.callTool({ name: 'test_sampling', arguments: { prompt: 'hi' } });
  report.sampling = sampled.content[0].text;
  if (kill) {
    const n = 8;
    report.killProgress = [];
    let announced = false;
    const call = client.callTool({ name: 'analyze_data', arguments: { num_items: n } }, undefined, {
      onprogress: (p) => {
        report.killProgress.push(p.progress);
        if (!announced) {
          announced = true;
          const holder = report.gets[report.gets.length - 1].instance;
          process.stdout.write(`KILL ${holder}\n`);
        }
      },
      timeout: 12000,
    });
    try {
      const r = await call;
      report.killResult = r.structuredContent;
    } catch (e) {
      report.killError = String(e && e.message || e);
    }
    report.endpointAfter = transport._endpoint && transport._endpoint.href;
    try {
      const r = await withTimeout(client.callTool({ name: 'get_counter', arguments: {} }), 5000, 'get_counter');
      report.afterCounter = r.structuredContent.counter;
    } catch (e) {
      report.afterError = String(e && e.message || e);
    }
  }
  await client.close();
}

main().then(
  () => { process.stdout.write(`REPORT ${JSON.stringify(report)}\n`); process.exit(0); },
  (e) => { report.fatal = String(e && e.stack || e); process.stdout.write(`REPORT ${JSON.stringify(report)}\n`); process.exit(1); },
);
