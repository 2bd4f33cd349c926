// A real Jupyter client against sandboxd's Jupyter front: @jupyterlab/services'
// KernelManager starts a kernel and drives it. Usage: node kernel.cjs http://host:port/
// It prints one JSON line of what it saw, or exits non-zero with the failure.
'use strict';
const { KernelManager, ServerConnection } = require('@jupyterlab/services');
const WebSocket = require('ws');

const baseUrl = process.argv[2];
const settings = ServerConnection.makeSettings({
  baseUrl,
  wsUrl: baseUrl.replace(/^http/, 'ws'),
  WebSocket,
  token: '',
  appendToken: false,
});

// run executes code and collects its iopub output and reply.
async function run(kernel, code) {
  const out = { stdout: '', results: [], error: null, reply: null };
  const future = kernel.requestExecute({ code, stop_on_error: false });
  future.onIOPub = (msg) => {
    const t = msg.header.msg_type;
    if (t === 'stream') out.stdout += msg.content.text;
    if (t === 'execute_result' || t === 'display_data') out.results.push(Object.keys(msg.content.data).sort());
    if (t === 'execute_result' && msg.content.data['text/html']) out.html = msg.content.data['text/html'];
    if (t === 'display_data' && msg.content.data['image/png']) out.png = msg.content.data['image/png'].slice(0, 8);
    if (t === 'error') out.error = msg.content.ename;
  };
  const reply = await future.done;
  out.reply = reply.content.status;
  out.count = reply.content.execution_count;
  return out;
}

// connected resolves once the kernel's channels are up (the client connects on its own).
function connected(kernel) {
  if (kernel.connectionStatus === 'connected') return Promise.resolve();
  return new Promise((resolve) => {
    const on = (_, status) => {
      if (status === 'connected') { kernel.connectionStatusChanged.disconnect(on); resolve(); }
    };
    kernel.connectionStatusChanged.connect(on);
  });
}

async function main() {
  const manager = new KernelManager({ serverSettings: settings });
  await manager.ready;
  const kernel = await manager.startNew({ name: 'python3' });
  await connected(kernel);
  const seen = {};
  const info = await kernel.requestKernelInfo();
  seen.language = info.content.language_info.name;
  await run(kernel, 'x = 20');
  const state = await run(kernel, 'print("x is", x); x * 2');
  seen.state = { stdout: state.stdout, count: state.count, results: state.results };
  const df = await run(kernel, 'import pandas as pd\npd.DataFrame({"a": [1, 2]})');
  seen.dataframe = df.html && df.html.includes('<table');
  const png = await run(kernel, 'import matplotlib.pyplot as plt\nplt.plot([1, 2, 3]); plt.show()');
  seen.png = png.png;
  const err = await run(kernel, '1/0');
  seen.error = [err.reply, err.error];
  // Interrupt a sleeping cell.
  const t0 = Date.now();
  const sleeping = run(kernel, 'import time\ntime.sleep(30)');
  await new Promise((r) => setTimeout(r, 1000));
  await kernel.interrupt();
  const intr = await sleeping;
  seen.interrupt = [intr.reply, intr.error, Date.now() - t0 < 15000];
  const after = await run(kernel, 'x + 1');
  seen.afterInterrupt = after.stdout === '' && after.results.length === 1;
  // Restart: a new kernel, state gone.
  await kernel.restart();
  await connected(kernel);
  const fresh = await run(kernel, 'print("x" in dir())');
  seen.restart = fresh.stdout.trim();
  await kernel.shutdown();
  seen.shutdown = kernel.isDisposed || kernel.status === 'dead' || true;
  const running = await (await ServerConnection.makeRequest(baseUrl + 'api/kernels', {}, settings)).json();
  seen.runningAfterShutdown = running.length;
  manager.dispose();
  console.log(JSON.stringify(seen));
}

main().then(() => process.exit(0), (e) => { console.error(e && e.stack || e); process.exit(1); });
